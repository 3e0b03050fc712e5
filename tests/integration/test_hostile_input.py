"""Hostile names (quotes, SQL, NUL, very long, any unicode) against the real market-data database.

Every value is bound, so a query with them finds nothing, changes nothing and raises nothing but the
named param error.
"""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibkr_market_data import repository
from ibkr_market_data.errors import InvalidRunParamError
from ibkr_market_data.tasks.params import select_wanted_symbols
from ibkr_market_data.universe import COLUMNS, load_universe, load_universe_files

HOSTILE_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
SQL_ATTEMPTS = [
    "'; DROP TABLE symbols; --",
    "AAPL' OR '1'='1",
    'AAPL" OR "1"="1',
    "%s",
    "%(symbol)s",
    "\\",
    "x" * 100_000,
    "株式 🚀 ÄÖÜ",
]
HOSTILE_NAME = st.one_of(st.sampled_from(SQL_ATTEMPTS), st.text(min_size=1, max_size=30))
# PostgreSQL text cannot hold NUL: the tests below send NUL only where it must be refused first.
BOUNDABLE_NAME = HOSTILE_NAME.filter(lambda name: "\x00" not in name)


@pytest.fixture
def loaded_symbols(db_conn: psycopg.Connection) -> int:
    repository.upsert_universe(db_conn, [s for s in load_universe() if s.symbol in ("AAPL", "MSFT", "BHP")])
    db_conn.commit()
    return len(repository.select_symbols(db_conn, active_only=False))


def _symbol_count(conn: psycopg.Connection) -> int:
    return len(repository.select_symbols(conn, active_only=False))


@HOSTILE_SETTINGS
@given(names=st.lists(BOUNDABLE_NAME, min_size=1, max_size=4), exchanges=st.lists(BOUNDABLE_NAME, max_size=3))
def test_hostile_names_in_a_symbol_query_find_nothing_and_change_nothing(
    db_conn, loaded_symbols, names, exchanges
):
    assert loaded_symbols == 3
    rows = repository.select_symbols(db_conn, symbols=names, exchanges=exchanges, active_only=False)
    assert rows == []
    assert _symbol_count(db_conn) == 3


@HOSTILE_SETTINGS
@given(names=st.lists(HOSTILE_NAME, min_size=1, max_size=4))
def test_hostile_symbols_param_is_refused_by_name_before_any_request(db_conn, loaded_symbols, names):
    with pytest.raises(InvalidRunParamError, match="Param 'symbols' names unknown symbols"):
        select_wanted_symbols(db_conn, [name.strip().upper() or "?" for name in names], ["NASDAQ"])
    assert _symbol_count(db_conn) == loaded_symbols


@HOSTILE_SETTINGS
@given(
    symbol=BOUNDABLE_NAME.filter(
        lambda name: name.strip() and len(name.strip()) <= 32 and "\n" not in name and "\r" not in name
    )
)
def test_a_hostile_universe_name_is_stored_verbatim(db_conn, loaded_symbols, tmp_path, symbol):
    import csv

    path = tmp_path / "hostile.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerow([symbol, "STK", "SMART", "NASDAQ", "USD", 1, 1, "equity", symbol])
    [entry] = load_universe_files([path])
    try:
        repository.upsert_universe(db_conn, [entry])
        [row] = repository.select_symbols(db_conn, symbols=[entry.symbol], active_only=False)
        assert row.symbol == entry.symbol == symbol.strip()
        assert _symbol_count(db_conn) == loaded_symbols + 1
    finally:
        db_conn.rollback()
    assert _symbol_count(db_conn) == loaded_symbols
