"""Provider metadata: how Airflow learns the ``ibkr`` connection type and shows it in the UI.

The form's defaults (its placeholders and descriptions) and its bounds come from
``IbkrConnectionConfig``, so the form and the hook cannot disagree. See docs/configuration.md.
"""

from __future__ import annotations

from typing import Any, TypedDict

from ibkr_market_data.hooks.ibkr_config import MAX_API_CLIENTS, IbkrConnectionConfig, MarketDataType

_DEFAULT = IbkrConnectionConfig()


class ConnField(TypedDict):
    """One extra's field in the connection form: a JSON schema with a label and help text."""

    label: str
    schema: dict[str, object]
    description: str


def _shown(value: object) -> str:
    """Return a default as a person types it into the form: ``true``, ``10``, ``1``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


#: Extras of the ``ibkr`` connection, rendered by the UI's connection form (see IbkrHook's docstring).
#: Every schema admits null: an emptied field means the default.
CONN_FIELDS: dict[str, ConnField] = {
    "client_id": {
        "label": "First client id",
        "schema": {"type": ["integer", "null"], "minimum": 0},
        "description": f"First TWS API client id to lease (default {_shown(_DEFAULT.client_id)}).",
    },
    "client_id_range": {
        "label": "Client id range",
        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_API_CLIENTS},
        "description": (
            "How many client ids from the first one may be leased "
            f"(default {_shown(_DEFAULT.client_id_range)}; TWS allows {MAX_API_CLIENTS} clients)."
        ),
    },
    "readonly": {
        "label": "Read-only",
        "schema": {"type": ["boolean", "null"]},
        "description": (
            f"Connect read-only (default {_shown(_DEFAULT.readonly)}); the collector places no orders."
        ),
    },
    "account": {
        "label": "Account",
        "schema": {"type": ["string", "null"]},
        "description": "Unused: the hook synchronises no account at connect.",
    },
    "market_data_type": {
        "label": "Market data type",
        "schema": {"type": ["integer", "null"], "enum": [*(int(kind) for kind in MarketDataType), None]},
        "description": (
            ", ".join(f"{int(kind)} {kind.name.lower().replace('_', '-')}" for kind in MarketDataType)
            + f" (default {_shown(_DEFAULT.market_data_type)})."
        ),
    },
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "description": f"The API handshake (default {_shown(_DEFAULT.connect_timeout)}).",
    },
    "request_timeout": {
        "label": "Request timeout (s)",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "description": (
            "One historical, contract or head-timestamp request before it is given up "
            f"(default {_shown(_DEFAULT.request_timeout)})."
        ),
    },
}

#: What an empty field of the form shows: the value the hook uses for it.
PLACEHOLDERS: dict[str, str] = {
    "host": _DEFAULT.host,
    "port": _shown(_DEFAULT.port),
    **{
        name: _shown(getattr(_DEFAULT, name))
        for name in IbkrConnectionConfig.extra_names()
        if name != "account"
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata: Airflow's ``apache_airflow_provider`` entry point calls it."""
    return {
        "package-name": "airflow-provider-ibkr-market-data",
        "name": "Interactive Brokers market data",
        "description": "Hook for TWS / IB Gateway and daily market-data collection into PostgreSQL.",
        "versions": ["0.1.0"],
        "connection-types": [
            {
                "connection-type": "ibkr",
                "hook-class-name": "ibkr_market_data.hooks.ibkr.IbkrHook",
                "hook-name": "Interactive Brokers (TWS / IB Gateway)",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "password"],
                    "relabeling": {"host": "TWS / IB Gateway host", "port": "API port"},
                    "placeholders": PLACEHOLDERS,
                },
            }
        ],
    }
