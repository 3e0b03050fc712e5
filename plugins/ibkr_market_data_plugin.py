"""Register the exchange-session timetable with Airflow, and warm the collect task's imports.

The hook and its ``ibkr`` connection type come from the provider entry point, not from here. See
docs/architecture.md.
"""

# Plugins load before the executor forks its workers, so every task process inherits these imports
# (~0.3 CPU-s each otherwise). Not the IB client: it creates an event loop at import.
import numpy  # noqa: F401
from airflow.plugins_manager import AirflowPlugin
from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401

from ibkr_market_data.timetables import ExchangeSessionTimetable


class IbkrMarketDataPlugin(AirflowPlugin):
    """The timetable of the daily DAG."""

    name = "ibkr_market_data"
    timetables = [ExchangeSessionTimetable]
