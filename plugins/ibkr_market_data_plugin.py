"""Registers the exchange-session timetable with Airflow.

The IBKR hook and its ``ibkr`` connection type are registered by the provider package this repo
installs (``pyproject.toml``'s ``apache_airflow_provider`` entry point): Airflow 3 ignores hooks
listed in a plugin, and its connection form only offers types that a provider declares.
"""

from airflow.plugins_manager import AirflowPlugin

from ibkr_market_data.timetables import ExchangeSessionTimetable


class IbkrMarketDataPlugin(AirflowPlugin):
    name = "ibkr_market_data"
    timetables = [ExchangeSessionTimetable]
