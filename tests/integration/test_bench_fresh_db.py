"""Each bench repeat's database: a copy of the migrated template, whatever the last repeat left."""

import psycopg
import pytest

from bench import fresh_db


def test_recreate_drops_what_a_repeat_wrote_and_copies_the_template():
    with fresh_db.template() as template, fresh_db.measured(template) as measured:
        assert fresh_db.bar_count(measured) == 0, "migrated: market_data is there, empty"
        with psycopg.connect(template) as conn:
            conn.execute("CREATE TABLE loaded_universe (symbol text)")
            conn.execute("INSERT INTO loaded_universe VALUES ('AAPL')")
        with psycopg.connect(measured) as conn:
            conn.execute("CREATE TABLE left_by_a_repeat (n int)")
        fresh_db.recreate(measured, template)
        with psycopg.connect(measured) as conn:
            assert conn.execute("SELECT symbol FROM loaded_universe").fetchall() == [("AAPL",)]
            assert conn.execute("SELECT to_regclass('left_by_a_repeat')").fetchone() == (None,)


def test_recreate_refuses_a_database_that_is_not_the_bench_s():
    with pytest.raises(ValueError, match="Refusing"):
        fresh_db.recreate("postgresql://127.0.0.1/market_data", "postgresql://127.0.0.1/template")


def test_the_server_process_found_for_a_database_is_the_parent_of_its_backends(market_db):
    from bench.process_tree import descendants, postmaster_pid

    server = postmaster_pid(market_db)
    with psycopg.connect(market_db) as conn:
        (backend,) = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend in descendants(server)
