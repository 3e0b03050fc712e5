"""Fixtures shared by the integration tests: a small symbol universe loaded through the simulator."""

import psycopg
import pytest

from ibkr_market_data import repository
from ibkr_market_data.hooks.ibkr import IbkrHook
from ibkr_market_data.symbols import load_symbols
from ibkr_market_data.universe import load_universe

#: Two ASX names and a sub-cent one, two NASDAQ names and one trading > 2**31 shares a day,
#: BRK A above 500,000 USD (NYSE) and SPY (ARCA).
SMALL_UNIVERSE = ("BHP", "CBA", "GGP", "AAPL", "MSFT", "SQQQ", "BRK A", "SPY")


@pytest.fixture
def small_universe(market_db, ibkr_connection):
    """Load SMALL_UNIVERSE into the test database and resolve it through the simulator."""
    universe = [entry for entry in load_universe() if entry.symbol in SMALL_UNIVERSE]
    assert len(universe) == len(SMALL_UNIVERSE)
    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        report = load_symbols(conn, hook, universe)
    assert sorted(report.resolved) == sorted(SMALL_UNIVERSE)
    return universe


@pytest.fixture
def partitioned_db(db_conn: psycopg.Connection) -> psycopg.Connection:
    """Return the session's test database with no monthly partition left by another test, and a symbol."""
    for (name,) in db_conn.execute(
        "SELECT relid::regclass::text FROM pg_partition_tree('market_data') WHERE level = 2"
    ).fetchall():
        db_conn.execute(f'DROP TABLE "{name}"')
    db_conn.execute(
        "INSERT INTO symbols (id, symbol, exchange, primary_exchange, currency, active)"
        " VALUES (1, 'AAPL', 'SMART', 'NASDAQ', 'USD', TRUE)"
    )
    db_conn.commit()
    repository.forget_known_partitions()
    return db_conn


@pytest.fixture
def daily_dag(airflow_db):
    """Parse the daily DAG from its file, for ``dag.test()``."""
    from airflow.dag_processing.dagbag import DagBag

    from ibkr_market_data_dev.local_env import REPO_ROOT

    dag_bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "daily_market_data.py"))
    assert not dag_bag.import_errors
    return dag_bag.get_dag("daily_market_data")


@pytest.fixture
def backfill_dag(airflow_db):
    """Parse the backfill DAG from its file, for ``dag.test()``."""
    from airflow.dag_processing.dagbag import DagBag

    from ibkr_market_data_dev.local_env import REPO_ROOT

    dag_bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "backfill_market_data.py"))
    assert not dag_bag.import_errors
    return dag_bag.get_dag("backfill_market_data")
