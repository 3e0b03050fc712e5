"""Provider metadata: how Airflow learns the ``ibkr`` connection type and shows it in the UI."""

from __future__ import annotations

from typing import Any

#: Extras of the ``ibkr`` connection, rendered by the UI's connection form (see IbkrHook's docstring).
CONN_FIELDS: dict[str, Any] = {
    "client_id": {
        "label": "First client id",
        "schema": {"type": ["integer", "null"], "minimum": 0},
        "description": "First TWS API client id to lease (default 1).",
    },
    "client_id_range": {
        "label": "Client id range",
        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 32},
        "description": "How many client ids from the first one may be leased (default 32).",
    },
    "readonly": {
        "label": "Read-only",
        "schema": {"type": ["boolean", "null"]},
        "description": "Connect read-only (default true); the collector places no orders.",
    },
    "account": {
        "label": "Account",
        "schema": {"type": ["string", "null"]},
        "description": "Account to synchronise at connect; empty when the login has one.",
    },
    "market_data_type": {
        "label": "Market data type",
        "schema": {"type": ["integer", "null"], "enum": [1, 2, 3, 4, None]},
        "description": "1 live, 2 frozen, 3 delayed, 4 delayed-frozen (default 1).",
    },
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "schema": {"type": ["number", "null"], "minimum": 1},
        "description": "Handshake and connect-time sync (default 10).",
    },
    "request_timeout": {
        "label": "Request timeout (s)",
        "schema": {"type": ["number", "null"], "minimum": 1},
        "description": "One historical or contract request before it is cancelled (default 60).",
    },
}


def get_provider_info() -> dict[str, Any]:
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
                    "placeholders": {"host": "127.0.0.1", "port": "4002"},
                },
            }
        ],
    }
