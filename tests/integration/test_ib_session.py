"""tasks.ib_session.ib_session: the task's IB session leases its client id in the market-data database."""

import psycopg
import pytest

from ibkr_market_data.errors import PermanentError
from ibkr_market_data.repository.leases import ADVISORY_LOCK_NAMESPACE
from ibkr_market_data.tasks.ib_session import ib_session


def advisory_locked_ids(market_db):
    """Client ids leased in this test's database (the server is shared with other test runs)."""
    with psycopg.connect(market_db) as conn:
        rows = conn.execute(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (ADVISORY_LOCK_NAMESPACE,),
        ).fetchall()
    return {row[0] for row in rows}


def test_the_client_id_is_leased_over_the_connections_range(market_db, ibkr_connection):
    with ib_session() as (_, hook):
        hook.get_conn()
        # ibkr_connection leases from client_id=10 over client_id_range=32.
        assert 10 <= hook.client_id < 42
        assert advisory_locked_ids(market_db) == {hook.client_id}
        assert ibkr_connection.connected_client_ids() == {hook.client_id}
    assert advisory_locked_ids(market_db) == set()


def test_a_bad_extra_fails_the_task_without_retry(market_db, ibkr_connection, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://{ibkr_connection.host}:{ibkr_connection.port}?client_id_range=0",
    )
    with pytest.raises(PermanentError, match="extra client_id_range must be 1..32"):
        with ib_session() as (_, hook):
            hook.get_conn()
    assert ibkr_connection.connected_client_ids() == set()
