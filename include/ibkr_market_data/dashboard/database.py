"""The dashboard's own connections to the market-data database: short timeouts, read-only transactions.

The collector's connections (``tasks/database.py``) are untouched. See docs/operations.md#limits.
"""

from __future__ import annotations

from typing import Any, cast

import psycopg
from airflow.providers.postgres.hooks.postgres import PostgresHook

from ibkr_market_data.dashboard.limits import DashboardLimits
from ibkr_market_data.settings import MARKET_DATA_CONN_ID


class DashboardPostgresHook(PostgresHook):
    """The ``market_data_db`` connection, opened with the dashboard's timeouts and read-only transactions.

    Every extra of the connection is honoured as by ``PostgresHook``; its ``options`` keep their settings
    except the dashboard's (``statement_timeout``, ``lock_timeout``, ``default_transaction_read_only``).
    """

    def __init__(self, limits: DashboardLimits, **kwargs: Any) -> None:
        super().__init__(postgres_conn_id=MARKET_DATA_CONN_ID, **kwargs)
        self.limits = limits

    def _create_connection(self, conn_args: dict[str, Any]) -> Any:
        # The one place the provider holds the final arguments, after the connection's extras.
        return super()._create_connection(self.limits.connect_args(conn_args))


def open_dashboard_connection(limits: DashboardLimits) -> psycopg.Connection:
    """Return a new connection to the market-data database bounded by ``limits``; the caller closes it.

    :param limits: the timeouts to open it with.
    :raises airflow.exceptions.AirflowNotFoundException: ``market_data_db`` is not configured.
    :raises psycopg.OperationalError: the server cannot be reached in ``limits.connect_timeout``.
    """
    # The provider types get_conn() as a psycopg2 / psycopg 3 union; this deployment runs psycopg 3.
    return cast("psycopg.Connection", DashboardPostgresHook(limits).get_conn())
