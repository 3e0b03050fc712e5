"""Registers the exchange-session timetable with Airflow, and warms the collect task's imports.

The IBKR hook and its ``ibkr`` connection type are registered by the provider package this repo
installs (``pyproject.toml``'s ``apache_airflow_provider`` entry point): Airflow 3 ignores hooks
listed in a plugin, and its connection form only offers types that a provider declares.

Why the imports below: the scheduler loads plugins before the LocalExecutor forks its workers, and
every task process is a fork of a worker. Modules imported here are therefore already in memory
in each of the ~300 collect tasks of a daily run, instead of costing each ~0.3 CPU-s to import
(PostgresHook with psycopg, and numpy, which the IB client's event library imports). The IB
client itself is not imported here: it creates an event loop at import, which must not be shared
across forks.
"""

import numpy  # noqa: F401
from airflow.plugins_manager import AirflowPlugin
from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401

from ibkr_market_data.timetables import ExchangeSessionTimetable


class IbkrMarketDataPlugin(AirflowPlugin):
    name = "ibkr_market_data"
    timetables = [ExchangeSessionTimetable]
