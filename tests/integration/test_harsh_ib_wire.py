"""IB's bad days on the wire, through the real client over the socket: farm outages, connect, bar answers.

Each test runs the daily run's tasks against the simulator and compares what is stored with what the
simulator serves (``served``). See docs/ib-behaviours.md.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

import psycopg

from ibkr_market_data import calendars
from ibkr_market_data.repository import RunContext
from ibkr_market_data.tasks import daily
from tests.integration.daily_runs import (
    DAG_ID,
    attempts,
    daily_run,
    no_data,
    start_market,
    stored_daily,
    stored_intraday,
)

WED = dt.date(2025, 6, 25)
AFTER_WED = calendars.session_close("NASDAQ", WED) + dt.timedelta(hours=1)
PAIR = ("AAPL", "MSFT")


def served_window(market, symbol: str, first: dt.date, last: dt.date = WED) -> dict:
    return market.served_daily(symbol, first, last)


def test_a_stalled_hmds_farm_outlasting_the_request_timeout_is_waited_out_and_the_request_sent_again(
    tws_simulator_factory, monkeypatch, market_db
):
    monkeypatch.setenv("IBKR_MAX_MAPPED_TASKS", "1")  # one group: both requests in flight on one connection
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        AFTER_WED,
        faults={"AAPL": {"hmds_farm_stall": 1, "outage_ms": 2500}},
        extras="connect_timeout=5&request_timeout=1.5",
    )
    run = daily_run(market, WED, symbols=PAIR, lookback=3)

    assert market.simulator.request_log.historical(symbol="AAPL")[0].outcome == "cancelled", "it did stall"
    assert attempts(market_db, run.run_id) == [
        ("AAPL", "1day", "completed", 1),
        ("MSFT", "1day", "completed", 1),
    ]
    for symbol in PAIR:
        stored = stored_daily(market_db, symbol)
        assert stored == served_window(market, symbol, min(stored)) and len(stored) == 3
        assert no_data(market_db, symbol) == {}, "an outage is never no data"


def test_a_connection_opened_while_the_hmds_farm_is_broken_waits_for_2106_too(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        AFTER_WED,
        faults={"AAPL": {"hmds_farm_stall": 1, "outage_ms": 2500}},
        extras="connect_timeout=5&request_timeout=1.5",
    )
    run_id = "manual__farm_latecomer"
    params = {"date": WED.isoformat(), "symbols": list(PAIR), "lookback_sessions": 3}
    aapl_group, msft_group = daily.plan(WED.isoformat(), params, RunContext(DAG_ID, run_id), now=AFTER_WED)
    first = threading.Thread(target=daily.collect, args=(aapl_group, RunContext(DAG_ID, run_id)))
    first.start()
    outage = market.simulator.simulator.hmds_outage
    assert market.simulator.request_log.wait_until(lambda _: outage.active, timeout=10), "AAPL broke the farm"
    daily.collect(msft_group, RunContext(DAG_ID, run_id))  # connects during the outage: 2105 at connect
    first.join()

    assert market.simulator.request_log.historical(symbol="MSFT")[0].outcome == "cancelled", "it did stall"
    assert attempts(market_db, run_id) == [("AAPL", "1day", "completed", 1), ("MSFT", "1day", "completed", 1)]
    for symbol in PAIR:
        stored = stored_daily(market_db, symbol)
        assert stored == served_window(market, symbol, min(stored)) and len(stored) == 3


def test_a_broken_hmds_farm_failing_requests_with_162_has_them_sent_again_after_2106(
    tws_simulator_factory, monkeypatch, market_db
):
    monkeypatch.setenv("IBKR_MAX_MAPPED_TASKS", "1")  # one group: both requests in flight on one connection
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        AFTER_WED,
        faults={"AAPL": {"hmds_farm_fail": 1, "outage_ms": 1000}},
    )
    run = daily_run(market, WED, symbols=PAIR, lookback=3)

    first = market.simulator.request_log.historical(symbol="AAPL")[0]
    assert (first.error_code, "farm connection is broken" in first.error_message) == (162, True)
    assert attempts(market_db, run.run_id) == [
        ("AAPL", "1day", "completed", 1),
        ("MSFT", "1day", "completed", 1),
    ]
    for symbol in PAIR:
        stored = stored_daily(market_db, symbol)
        assert stored == served_window(market, symbol, min(stored)) and len(stored) == 3
        assert no_data(market_db, symbol) == {}, "an outage is never no data"


def test_connect_notices_and_an_account_sync_slower_than_the_connect_timeout_do_not_hold_up_a_run(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        AFTER_WED,
        faults={"*": {"connect_notices": True, "account_sync_ms": 30_000}},
        extras="connect_timeout=2&request_timeout=10",
    )
    started = time.monotonic()
    run = daily_run(market, WED, symbols=PAIR, lookback=3)

    assert time.monotonic() - started < 20, "connect waits for the handshake, not for the account sync"
    assert attempts(market_db, run.run_id) == [
        ("AAPL", "1day", "completed", 1),
        ("MSFT", "1day", "completed", 1),
    ]
    assert run.problems == ""


def test_shuffled_answers_with_a_bar_sent_twice_are_stored_once_each_oldest_first(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        AFTER_WED,
        faults={"AAPL": {"bars_out_of_order": True, "duplicate_bar": True}},
    )
    daily_run(market, WED, lookback=10)
    daily_run(market, WED, lookback=1, timeframe="1min")

    stored = stored_daily(market_db, "AAPL")
    assert len(stored) == 10 and stored == served_window(market, "AAPL", min(stored))
    assert stored_intraday(market_db, "AAPL") == market.served_intraday("AAPL", WED)
    with psycopg.connect(market_db) as conn:
        for timeframe in ("1day", "1min"):
            by_id = conn.execute(
                "SELECT timestamp FROM market_data WHERE timeframe = %s ORDER BY id", (timeframe,)
            ).fetchall()
            assert by_id == sorted(by_id), f"{timeframe} bars written oldest first"


def test_an_answer_split_twice_before_its_newest_bar_leaves_a_gap_the_next_run_asks_again(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(tws_simulator_factory, monkeypatch, market_db, AFTER_WED)
    market.simulator.faults.set("AAPL", split_answer=2)  # the newest bar comes after the answer's end
    first = daily_run(market, WED, lookback=3)

    assert first.requests == 2, "the short answer is asked again once, in the same attempt"
    assert WED not in stored_daily(market_db, "AAPL") and len(stored_daily(market_db, "AAPL")) == 2
    assert no_data(market_db, "AAPL") == {WED: False}, "a gap to ask again, not settled no data"
    assert attempts(market_db, first.run_id) == [("AAPL", "1day", "completed", 1)]

    again = daily_run(market, WED, lookback=3)
    assert again.requests == 1
    stored = stored_daily(market_db, "AAPL")
    assert stored == served_window(market, "AAPL", min(stored)) and WED in stored
    assert no_data(market_db, "AAPL") == {}


def test_intraday_times_are_right_in_utc_whatever_the_login_time_zone(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory,
        monkeypatch,
        market_db,
        AFTER_WED,
        faults={"AAPL": {"naive_bar_times": True}},
        login_time_zone="Australia/Sydney",
    )
    daily_run(market, WED, lookback=1, timeframe="1min")

    stored = stored_intraday(market_db, "AAPL")
    assert stored == market.served_intraday("AAPL", WED)
    assert stored[0][0] == dt.datetime(2025, 6, 25, 13, 30)  # 09:30 New York (EDT) in UTC


#: Sessions around each daylight-saving change, and the UTC time of their first 1-minute bar.
DST_SESSIONS = {
    ("AAPL", dt.date(2025, 3, 7)): dt.datetime(2025, 3, 7, 14, 30),  # New York EST
    ("AAPL", dt.date(2025, 3, 10)): dt.datetime(2025, 3, 10, 13, 30),  # EDT from 2025-03-09
    ("AAPL", dt.date(2025, 10, 31)): dt.datetime(2025, 10, 31, 13, 30),
    ("AAPL", dt.date(2025, 11, 3)): dt.datetime(2025, 11, 3, 14, 30),  # EST from 2025-11-02
    ("BHP", dt.date(2025, 4, 4)): dt.datetime(2025, 4, 3, 23, 0),  # Sydney AEDT: the UTC day before
    ("BHP", dt.date(2025, 4, 7)): dt.datetime(2025, 4, 7, 0, 0),  # AEST from 2025-04-06
    ("BHP", dt.date(2025, 10, 3)): dt.datetime(2025, 10, 3, 0, 0),
    ("BHP", dt.date(2025, 10, 6)): dt.datetime(2025, 10, 5, 23, 0),  # AEDT from 2025-10-05
}


def test_daylight_saving_days_give_the_right_utc_stamps_and_the_whole_session_of_bars(
    tws_simulator_factory, monkeypatch, market_db
):
    market = start_market(
        tws_simulator_factory, monkeypatch, market_db, dt.datetime(2025, 11, 10, 12, tzinfo=dt.UTC)
    )
    for symbol, monday in (
        ("AAPL", dt.date(2025, 3, 10)),
        ("AAPL", dt.date(2025, 11, 3)),
        ("BHP", dt.date(2025, 4, 7)),
        ("BHP", dt.date(2025, 10, 6)),
    ):
        run = daily_run(market, monday, symbols=[symbol], lookback=2, timeframe="1min")
        assert {status for _, _, status, _ in attempts(market_db, run.run_id)} == {"completed"}

    for symbol, per_session in (("AAPL", 390), ("BHP", 360)):
        stored = stored_intraday(market_db, symbol)
        zone = calendars.time_zone("NASDAQ" if symbol == "AAPL" else "ASX")
        sessions = sorted(day for name, day in DST_SESSIONS if name == symbol)
        served = [bar for day in sessions for bar in market.served_intraday(symbol, day)]
        assert stored == served
        for day in sessions:
            of_day = [
                row[0]
                for row in stored
                if row[0].replace(tzinfo=dt.UTC).astimezone(ZoneInfo(zone)).date() == day
            ]
            assert len(of_day) == per_session, f"{symbol} {day}"
            assert of_day[0] == DST_SESSIONS[(symbol, day)], f"{symbol} {day}"
