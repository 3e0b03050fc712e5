"""Names shared by the DAGs, the setup files and the CLI: connections, pool, exchanges.

See docs/configuration.md.
"""

from __future__ import annotations

#: Airflow connection of the market-data PostgreSQL database (``AIRFLOW_CONN_MARKET_DATA_DB``).
MARKET_DATA_CONN_ID = "market_data_db"
#: Airflow connection of TWS / IB Gateway (``AIRFLOW_CONN_IBKR_DEFAULT``).
IBKR_CONN_ID = "ibkr_default"
#: Airflow pool every IB request runs in; its slots bound concurrent IB connections and requests.
IBKR_POOL = "ibkr"
#: The pool's slots, as ``pools.json`` creates it (a test holds them equal). With ``grouping``'s
#: in-flight limit derived from it, the pool stays under IB's 50 open requests.
IBKR_POOL_SLOTS = 16
#: Listing exchanges the daily DAG collects; their calendars drive its schedule.
DAILY_EXCHANGES = ("ASX", "NASDAQ", "NYSE", "ARCA")
#: Minutes after the last close of a trading date before its run starts.
CLOSE_DELAY_MINUTES = 30
#: Sessions each daily run looks back over per symbol, its own date included: it heals the missing
#: ones and re-fetches the stored ones to catch corrections. 1 collects only the run's own date.
DAILY_LOOKBACK_SESSIONS = 5
#: The most sessions the ``lookback_sessions`` param accepts: one request of ``N D`` stays small.
MAX_LOOKBACK_SESSIONS = 30
#: Minutes after the last close of a trading date before the adjustments DAG refreshes factors: after
#: the daily run, so the newest session has its stored bar.
ADJUSTMENTS_DELAY_MINUTES = 90
#: The DAGs whose runs the dashboard shows: reading it needs permission to read the runs of all three.
MARKET_DATA_DAG_IDS = ("daily_market_data", "backfill_market_data", "market_data_freshness")
