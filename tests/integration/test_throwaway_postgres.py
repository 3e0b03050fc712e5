"""The campaign's throwaway PostgreSQL server: its own port, stopped (refusing) and started again."""

import psycopg
import pytest

from ibkr_market_data_dev.throwaway_postgres import ThrowawayPostgres


def test_a_throwaway_server_refuses_while_stopped_and_keeps_its_data_across_a_restart():
    with ThrowawayPostgres() as server:
        assert server.port != 5432  # never the machine's shared server
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (value int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        server.stop()
        with pytest.raises(psycopg.OperationalError, match="refused"):
            psycopg.connect(server.url, connect_timeout=5)
        server.start()
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT value FROM kept").fetchall() == [(7,)]
            listen = conn.execute("SHOW listen_addresses").fetchone()
        assert listen == ("127.0.0.1",)
    assert not server.root.exists()
