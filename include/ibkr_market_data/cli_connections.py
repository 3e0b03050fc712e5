"""Find the Airflow connections an operator command needs, wherever Airflow keeps them.

Outside a task, the hooks read only the environment and secrets backends; connections in the
metadata database are found here and handed to them. See docs/operations.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from ibkr_market_data.errors import MissingConnectionError

log = logging.getLogger(__name__)


def connection_variable(conn_id: str) -> str:
    """Return the environment variable Airflow reads connection ``conn_id`` from: ``AIRFLOW_CONN_<ID>``."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def provide_connections(conn_ids: Iterable[str]) -> None:
    """Make each of ``conn_ids`` readable by the hooks of this process, wherever Airflow keeps it.

    A connection not in the environment is looked up as Airflow's core does (a configured secrets
    backend, the environment, then the metadata database) and exported to this process's
    environment as ``AIRFLOW_CONN_<ID>`` JSON, where the Task SDK's ``BaseHook.get_connection``
    finds it. Nothing is printed or logged of its fields.

    :param conn_ids: the connection ids the command needs.
    :raises MissingConnectionError: naming every one of ``conn_ids`` that Airflow has nowhere.
    """
    missing = []
    for conn_id in dict.fromkeys(conn_ids):
        variable = connection_variable(conn_id)
        if os.environ.get(variable):
            continue
        found = _airflow_connection_json(conn_id)
        if found is None:
            missing.append(conn_id)
        else:
            os.environ[variable] = found
            log.info("Connection %s: read from Airflow's secrets backend or metadata database", conn_id)
    if missing:
        raise MissingConnectionError(
            f"Airflow has no connection {', '.join(missing)} (looked in "
            f"{', '.join(connection_variable(conn_id) for conn_id in missing)}, the secrets backend and the "
            "metadata database); add it in the UI (Admin > Connections), with `airflow connections add` "
            "or as that variable"
        )


def _airflow_connection_json(conn_id: str) -> str | None:
    """Return connection ``conn_id`` in Airflow's JSON form, found as Airflow's core finds it, or None."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    return conn.as_json()
