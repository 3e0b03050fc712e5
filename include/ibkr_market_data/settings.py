"""Names shared by the DAGs, the setup files and the CLI: connections, pool, exchanges."""

from __future__ import annotations

#: Airflow connection of the market-data PostgreSQL database (``AIRFLOW_CONN_MARKET_DATA_DB``).
MARKET_DATA_CONN_ID = "market_data_db"
#: Airflow connection of TWS / IB Gateway (``AIRFLOW_CONN_IBKR_DEFAULT``).
IBKR_CONN_ID = "ibkr_default"
#: Airflow pool every IB request runs in; its slots bound concurrent IB connections and requests.
IBKR_POOL = "ibkr"
#: Listing exchanges the daily DAG collects; their calendars drive its schedule.
DAILY_EXCHANGES = ("ASX", "NASDAQ", "NYSE", "ARCA")
#: Minutes after the last close of a trading date before its run starts.
CLOSE_DELAY_MINUTES = 30
