"""Adjusted prices end to end: a year with two dividends and a split, collected, then adjusted.

Real PostgreSQL, the real ib_insync client over the socket to the simulator, the backfill and the
adjustments DAGs run with ``dag.test()``. The simulator's own ADJUSTED_LAST is the reference.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from ibkr_market_data import calendars, repository
from ibkr_market_data.bars import Bar
from ibkr_market_data.repository import RunContext
from tws_simulator.testing import SettableClock

NOW = dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC)
BEFORE_SPLIT = dt.datetime(2025, 1, 31, 22, tzinfo=dt.UTC)  # Friday 31 January, after the US close
YEAR = (dt.date(2024, 7, 1), dt.date(2025, 6, 27))
FIRST_EX, SPLIT, SECOND_EX = dt.date(2024, 11, 8), dt.date(2025, 2, 3), dt.date(2025, 5, 12)
INTRADAY_DAY = dt.date(2024, 11, 7)  # the session before the first ex-date
#: AAPL: two dividends as paid (the first before a 4-for-1 split, so on the old share basis).
ACTIONS = {
    "AAPL": {
        "dividend": [
            {"date": FIRST_EX.isoformat(), "amount": 0.96},
            {"date": SECOND_EX.isoformat(), "amount": 0.26},
        ],
        "split": {"date": SPLIT.isoformat(), "ratio": 4},
    }
}
CENT = Decimal("0.005")  # half a cent: equal to the cent
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def market(market_db, airflow_db, tws_simulator_factory, monkeypatch):
    """Start a simulator on a settable clock serving ACTIONS; load AAPL and MSFT through it."""
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.symbols import load_symbols
    from ibkr_market_data.universe import load_universe

    clock = SettableClock(BEFORE_SPLIT)
    simulator = tws_simulator_factory(faults=ACTIONS, clock=clock)
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://{simulator.host}:{simulator.port}?client_id=10&client_id_range=32"
        "&connect_timeout=5&request_timeout=10",
    )
    # The split leaves a 4:1 cliff in the stored raw series until its history is re-fetched (another
    # part of the product); here it must only not stop the collection.
    monkeypatch.setenv("IBKR_QUALITY_SEVERITIES", "spike=warning")
    universe = [entry for entry in load_universe() if entry.symbol in ("AAPL", "MSFT")]
    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        assert sorted(load_symbols(conn, hook, universe).resolved) == ["AAPL", "MSFT"]
    return simulator, clock


def dag(name):
    from airflow.dag_processing.dagbag import DagBag

    from ibkr_market_data_dev.local_env import REPO_ROOT

    dag_bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / f"{name}.py"))
    assert not dag_bag.import_errors
    return dag_bag.get_dag(name)


def backfill(start, end, timeframe="1day"):
    conf = {"start_date": start.isoformat(), "end_date": end.isoformat(), "timeframe": timeframe}
    run = dag("backfill_market_data").test(run_conf={**conf, "symbols": ["AAPL", "MSFT"]})
    assert run.state == "success"


def collect_the_year(simulator, clock):
    """Collect the year in two parts: up to the split on the old share basis, the rest after it."""
    backfill(YEAR[0], BEFORE_SPLIT.date())
    backfill(INTRADAY_DAY, INTRADAY_DAY, "5min")
    clock.set(NOW)
    backfill(dt.date(2025, 2, 1), YEAR[1])


def closes(url, symbol, relation="market_data"):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"""
            SELECT b.timestamp::date, b.close, b.volume FROM {relation} b JOIN symbols s ON s.id = b.symbol_id
            WHERE s.symbol = %s AND b.timeframe = '1day' AND b.timestamp BETWEEN %s AND %s
            ORDER BY b.timestamp
            """,  # noqa: S608 - one of two relation names
            (symbol, *YEAR),
        ).fetchall()
    return {session: (close, volume) for session, close, volume in rows}


def symbol_id(url, symbol):
    with psycopg.connect(url) as conn:
        [row] = repository.select_symbols(conn, symbols=[symbol])
    return row.id


def test_adjusted_closes_equal_adjusted_last_to_the_cent_for_every_session_of_the_year(market, market_db):
    simulator, clock = market
    collect_the_year(simulator, clock)
    sessions = calendars.sessions_between("NASDAQ", *YEAR)
    raw = closes(market_db, "AAPL")
    assert list(raw) == sessions
    cliff = raw[dt.date(2025, 1, 31)][0] / Decimal(
        str(simulator.served.daily_bar("AAPL", dt.date(2025, 1, 31), NOW).close)
    )
    assert abs(cliff - 4) < Decimal("1e-6"), "the stored raw series is on two share bases"

    run = dag("market_data_adjustments").test()
    assert run.state == "success"

    requests = [r for r in simulator.request_log.historical() if r.what_to_show == "ADJUSTED_LAST"]
    assert sorted((r.symbol, r.end_date_time, r.bar_size) for r in requests) == [
        ("AAPL", "", "1 day"),
        ("MSFT", "", "1 day"),
    ], "one request per symbol, back from now"

    truth = {bar.date: bar for bar in simulator.served.adjusted_daily_bars("AAPL", *YEAR, NOW)}
    adjusted = closes(market_db, "AAPL", "market_data_adjusted")
    assert list(adjusted) == sessions == list(truth)
    differences = {day: abs(close - truth[day].close) for day, (close, _) in adjusted.items()}
    worst = max(differences.values())
    print(f"\nAAPL, {len(sessions)} sessions: largest |adjusted close - ADJUSTED_LAST close| = {worst}")
    assert worst < CENT, "equal to the cent"
    assert worst <= Decimal("1e-6"), "and far closer: the factor keeps 12 decimal places"
    assert {day: volume for day, (_, volume) in adjusted.items()} == {
        day: bar.volume for day, bar in truth.items()
    }, "volume on today's share basis"
    # The adjustment is not the identity: both dividends and the split show in it.
    assert raw[dt.date(2024, 7, 1)][0] / adjusted[dt.date(2024, 7, 1)][0] > 4
    assert adjusted[YEAR[1]] == raw[YEAR[1]]

    with psycopg.connect(market_db) as conn:
        dividends = conn.execute(
            "SELECT effective_session, amount, detected_by FROM corporate_actions ORDER BY 1"
        ).fetchall()
        msft_factors = conn.execute(
            "SELECT DISTINCT factor, volume_factor FROM adjustment_factors af"
            " JOIN symbols s ON s.id = af.symbol_id WHERE s.symbol = 'MSFT'"
        ).fetchall()
    # Amounts on today's share basis: the first, paid before the 4-for-1 split, is a quarter.
    assert [(day, by) for day, _, by in dividends] == [
        (FIRST_EX, "adjusted_last"),
        (SECOND_EX, "adjusted_last"),
    ]
    for (_, amount, _), paid in zip(dividends, (Decimal("0.24"), Decimal("0.26")), strict=True):
        assert abs(amount - paid) <= Decimal("1e-6"), amount
    assert msft_factors == [(Decimal(1), Decimal(1))], "no dividend, no split: the identity"

    # Intraday bars take their session's factor (the 5-minute bars collected before the split).
    truth_minutes = simulator.served.view(simulator.model.contract("AAPL"), NOW).adjusted_intraday_bars(
        INTRADAY_DAY, 300, True
    )
    with psycopg.connect(market_db) as conn:
        minutes = repository.stored_bars(
            conn,
            symbol_id(market_db, "AAPL"),
            "5min",
            dt.datetime(2024, 11, 7, 14),
            dt.datetime(2024, 11, 7, 21),
            adjusted=True,
        )
    assert len(minutes) == len(truth_minutes) == 78
    for row, bar in zip(minutes, truth_minutes, strict=True):
        assert row[0] == bar.date.astimezone(dt.UTC).replace(tzinfo=None)
        assert abs(row[4] - bar.close) <= Decimal("1e-6") and row[5] == bar.volume

    # Nothing is due right after: a second run sends nothing.
    again = dag("market_data_adjustments").test()
    assert again.state == "success"
    assert len([r for r in simulator.request_log.historical() if r.what_to_show == "ADJUSTED_LAST"]) == 2


def test_raw_and_adjusted_are_one_parameter_apart_and_split_only_is_todays_trades(market, market_db):
    simulator, clock = market
    collect_the_year(simulator, clock)
    assert dag("market_data_adjustments").test().state == "success"
    aapl = symbol_id(market_db, "AAPL")
    start, end = (dt.datetime.combine(day, dt.time()) for day in YEAR)
    with psycopg.connect(market_db) as conn:
        raw = repository.stored_bars(conn, aapl, "1day", start, end)
        both = repository.stored_bars(conn, aapl, "1day", start, end, adjusted=True)
        split_only = repository.stored_bars(
            conn, aapl, "1day", start, end, adjusted=True, adjust_for=["split"]
        )
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT * FROM market_data_adjusted"
                " WHERE symbol_id = %s AND timeframe = '1day' AND timestamp BETWEEN %s AND %s",
                (aapl, start, end),
            ).fetchall()
        )
    assert [row[0] for row in raw] == [row[0] for row in both] == [row[0] for row in split_only]
    assert raw != both
    trades = {bar.date: bar for bar in simulator.served.daily_bars("AAPL", *YEAR, NOW)}
    for row in split_only:
        bar = trades[row[0].date()]
        assert abs(row[4] - bar.close) <= Decimal("1e-6") and row[5] == bar.volume
    # The read API: the same frame, one parameter apart.
    from ibkr_market_data import reader

    with psycopg.connect(market_db) as conn:
        raw_frame = reader.read_bars("AAPL", "1day", *YEAR, conn=conn)
        adjusted_frame = reader.read_bars("AAPL", "1day", *YEAR, adjusted=True, conn=conn)
    assert adjusted_frame.index.equals(raw_frame.index) and len(adjusted_frame) == 249
    truth = {bar.date: bar for bar in simulator.served.adjusted_daily_bars("AAPL", *YEAR, NOW)}
    for (_, timestamp), close in adjusted_frame["close"].items():
        assert abs(close - float(truth[timestamp.date()].close)) < 1e-6
    assert (adjusted_frame["close"] != raw_frame["close"]).sum() > 200
    # The view is the function inlined: the reader's filters reach the daily partition's index.
    assert "market_data_1day" in plan and "market_data_1min" not in plan and "Function Scan" not in plan


def test_rebased_raw_bars_make_the_symbol_due_and_the_adjusted_series_stays(market, market_db):
    from ibkr_market_data.tasks import adjustments as adjustments_task
    from ibkr_market_data_dev.simulated_ib import stored_bar

    simulator, clock = market
    collect_the_year(simulator, clock)
    run = RunContext("market_data_adjustments", "manual__test")
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert adjustments_task.refresh_adjustments({}, run, tomorrow)["fetched"] == 2
    before = closes(market_db, "AAPL", "market_data_adjusted")
    assert adjustments_task.refresh_adjustments({}, run, tomorrow)["fetched"] == 0, "current: nothing due"

    # The split's history re-fetch re-bases the stored raw bars (as the split detection does).
    aapl = symbol_id(market_db, "AAPL")
    with psycopg.connect(market_db) as conn:
        current = [stored_bar(bar) for bar in simulator.served.daily_bars("AAPL", *YEAR, NOW)]
        assert repository.upsert_bars(conn, aapl, "1day", current).revised > 100
        conn.commit()
    counts = adjustments_task.refresh_adjustments({}, run, tomorrow)
    assert counts["fetched"] == 1, "AAPL only: its stored bars changed"
    after = closes(market_db, "AAPL", "market_data_adjusted")
    assert after.keys() == before.keys()
    assert max(abs(after[day][0] - before[day][0]) for day in after) <= Decimal("1e-6")
    with psycopg.connect(market_db) as conn:
        volume_factors = conn.execute(
            "SELECT DISTINCT volume_factor FROM adjustment_factors WHERE symbol_id = %s", (aapl,)
        ).fetchall()
        dividends = conn.execute("SELECT COUNT(*) FROM corporate_actions").fetchone()[0]
    assert volume_factors == [(Decimal(1),)], "one share basis now"
    assert dividends == 2, "the same two dividends, recorded once"


def test_an_unknown_corporate_action_kind_in_the_setting_is_refused_naming_it(market_db, monkeypatch):
    from ibkr_market_data.errors import UnknownCorporateActionKindError

    monkeypatch.setenv("IBKR_ADJUST_FOR", "split,bonus")
    with psycopg.connect(market_db) as conn, pytest.raises(UnknownCorporateActionKindError) as refused:
        repository.stored_bars(
            conn, 1, "1day", dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 31), adjusted=True
        )
    assert str(refused.value) == (
        "IBKR_ADJUST_FOR: unknown corporate-action kind 'bonus'; adjusted prices account for split, dividend"
    )


def test_each_bar_takes_its_exchange_local_sessions_factor_one_after_the_fetch_and_none_unknown(db_conn):
    """The view's rules, on rows written directly: an ASX bar's session starts the UTC day before."""
    db_conn.execute(
        "INSERT INTO symbols (id, symbol, exchange, primary_exchange, currency, active)"
        " VALUES (1, 'BHP', 'ASX', 'ASX', 'AUD', TRUE), (2, 'CBA', 'ASX', 'ASX', 'AUD', TRUE)"
    )
    bars = [
        ("1day", dt.datetime(2025, 3, 4)),
        ("1day", dt.datetime(2025, 3, 5)),
        ("1day", dt.datetime(2025, 3, 6)),
        ("1day", dt.datetime(2025, 3, 7)),  # after the fetch's last session
        ("5min", dt.datetime(2025, 3, 4, 23, 0)),  # 10:00 in Sydney on 5 March: the 5th's session
        ("5min", dt.datetime(2025, 3, 5, 4, 55)),  # 15:55 in Sydney: still the 5th
    ]
    for symbol_id in (1, 2):
        for timeframe, timestamp in bars:
            price = Decimal(40)
            repository.upsert_bars(
                db_conn, symbol_id, timeframe, [Bar(timestamp, price, price, price, price, 1000, price, 1)]
            )
    db_conn.execute(
        "INSERT INTO adjustment_factors (symbol_id, session, factor, source, volume_factor)"
        " VALUES (1, '2025-03-04', 0.5, 'test', 2), (1, '2025-03-06', 0.9, 'test', 1)"
    )
    db_conn.execute(
        "INSERT INTO adjustment_fetches (symbol_id, fetched_at, requested_from, first_session, last_session,"
        " time_zone, sessions, dividends) VALUES (1, NOW(), '2025-03-04', '2025-03-04', '2025-03-06',"
        " 'Australia/Sydney', 2, 0)"
    )
    rows = db_conn.execute(
        "SELECT symbol_id, timeframe, timestamp, session, close, volume FROM market_data_adjusted"
        " ORDER BY symbol_id, timeframe, timestamp"
    ).fetchall()
    by_key = {
        (symbol_id, timeframe, ts): (session, close, volume)
        for symbol_id, timeframe, ts, session, close, volume in rows
    }
    assert by_key[1, "1day", dt.datetime(2025, 3, 4)] == (dt.date(2025, 3, 4), Decimal(20), 2000)
    assert by_key[1, "1day", dt.datetime(2025, 3, 5)] == (dt.date(2025, 3, 5), None, None), "no factor known"
    assert by_key[1, "1day", dt.datetime(2025, 3, 6)] == (dt.date(2025, 3, 6), Decimal(36), 1000)
    assert by_key[1, "1day", dt.datetime(2025, 3, 7)] == (dt.date(2025, 3, 7), Decimal(40), 1000), (
        "after: as traded"
    )
    assert by_key[1, "5min", dt.datetime(2025, 3, 4, 23, 0)][0] == dt.date(2025, 3, 5)
    assert by_key[1, "5min", dt.datetime(2025, 3, 5, 4, 55)][0] == dt.date(2025, 3, 5)
    assert {close for (symbol_id, *_), (_, close, _) in by_key.items() if symbol_id == 2} == {None}, (
        "never fetched"
    )
    split_only = db_conn.execute(
        "SELECT close, volume FROM adjusted_market_data(ARRAY['split']) WHERE symbol_id = 1"
        " AND timeframe = '1day' AND timestamp = '2025-03-04'"
    ).fetchone()
    assert split_only == (Decimal(20), 2000), "the split part: 1 / volume factor"


def test_an_adjusted_read_of_bars_without_a_factor_gives_nan_and_says_so(db_conn, caplog):
    from ibkr_market_data import reader

    db_conn.execute(
        "INSERT INTO symbols (id, symbol, exchange, primary_exchange, currency, active, con_id)"
        " VALUES (1, 'CBA', 'ASX', 'ASX', 'AUD', TRUE, 4036812)"
    )
    price = Decimal("120.5")
    repository.upsert_bars(
        db_conn, 1, "1day", [Bar(dt.datetime(2025, 3, 4), price, price, price, price, 1000, price, 9)]
    )
    db_conn.commit()
    raw = reader.read_bars("CBA", "1day", "2025-03-03", "2025-03-07", conn=db_conn)
    adjusted = reader.read_bars("CBA", "1day", "2025-03-03", "2025-03-07", adjusted=True, conn=db_conn)
    assert adjusted.index.equals(raw.index) and len(raw) == 1
    assert adjusted["close"].isna().all() and adjusted["volume"].isna().all()
    assert raw["close"].iloc[0] == 120.5 and raw["volume"].iloc[0] == 1000
    assert "CBA: 1 bars have no adjustment factor yet" in caplog.text


def test_a_failed_request_fails_the_task_naming_it_after_every_symbol_had_its_try(market, market_db):
    from ibkr_market_data.errors import CollectionError, PermanentError
    from ibkr_market_data.tasks import adjustments as adjustments_task
    from ibkr_market_data_dev.simulated_ib import stored_bar

    simulator, clock = market
    clock.set(NOW)
    with psycopg.connect(market_db) as conn:
        for symbol in ("AAPL", "MSFT"):
            week = simulator.served.daily_bars(symbol, dt.date(2025, 6, 23), dt.date(2025, 6, 27), NOW)
            repository.upsert_bars(
                conn, symbol_id(market_db, symbol), "1day", [stored_bar(bar) for bar in week]
            )
        conn.commit()
    run = RunContext("market_data_adjustments", "manual__failures")
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)

    simulator.faults.set("AAPL", no_permission=True)
    with pytest.raises(PermanentError, match="1 of 2 ADJUSTED_LAST requests failed: AAPL: IB error 354"):
        adjustments_task.refresh_adjustments({}, run, tomorrow)
    with psycopg.connect(market_db) as conn:
        fetched = conn.execute(
            "SELECT s.symbol FROM adjustment_fetches f JOIN symbols s ON s.id = f.symbol_id"
        ).fetchall()
    assert fetched == [("MSFT",)], "the other symbol had its try"

    simulator.faults.clear("AAPL", "no_permission")
    simulator.faults.set("AAPL", pacing_violation=True)
    with pytest.raises(CollectionError, match="AAPL") as raised:
        adjustments_task.refresh_adjustments({}, run, tomorrow)
    assert raised.value.retryable, "pacing passes: the task's retry asks again"
    simulator.faults.clear("AAPL")
    assert adjustments_task.refresh_adjustments({}, run, tomorrow)["fetched"] == 1, "AAPL alone is still due"


def test_migration_0010_adds_and_removes_only_its_own_objects_keeping_the_factors(market_db_server):
    from alembic import command

    from ibkr_market_data import schema
    from ibkr_market_data_dev import local_postgres
    from tests.integration.test_partitions import alembic_config

    url = local_postgres.create_database(market_db_server)
    try:
        schema.upgrade(url, "0009")
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO symbols (id, symbol, exchange, primary_exchange, currency)"
                " VALUES (1, 'X', 'SMART', 'NASDAQ', 'USD')"
            )
            conn.execute(
                "INSERT INTO adjustment_factors (symbol_id, session, factor, source)"
                " VALUES (1, '2025-01-02', 0.5, 'x')"
            )
        schema.upgrade(url)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT factor, volume_factor FROM adjustment_factors").fetchall() == [
                (Decimal("0.500000000000"), None)
            ]
            assert conn.execute("SELECT COUNT(*) FROM market_data_adjusted").fetchone() == (0,)
        command.downgrade(alembic_config(url), "0009")
        with psycopg.connect(url) as conn:
            relations = {
                row[0]
                for row in conn.execute(
                    "SELECT relname::text FROM pg_class WHERE relname IN"
                    " ('adjustment_fetches', 'market_data_adjusted', 'adjustment_factors')"
                ).fetchall()
            }
            assert relations == {"adjustment_factors"}
            assert conn.execute("SELECT factor FROM adjustment_factors").fetchall() == [(Decimal("0.5"),)]
        schema.upgrade(url)
    finally:
        local_postgres.drop_database(url)
