"""Wire-level mess and load through the real client: order, duplicates, late bars, time zones, queues."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from ib_insync import Stock

from ibkr_market_data import calendars
from tests.simulator.bar_assertions import assert_bars_equal
from tests.simulator.waiting import run_until

END = "20250627 23:59:59 US/Eastern"
WEEK = [dt.date(2025, 6, day) for day in (23, 24, 25, 26, 27)]
#: After every 2025 daylight-saving change, so their sessions exist.
LATE_2025 = dt.datetime(2025, 12, 1, 12, tzinfo=dt.UTC)


def stock(simulator, symbol: str) -> Stock:
    contract = simulator.model.contract(symbol)
    return Stock(contract.symbol, contract.exchange, contract.currency)


@pytest.fixture
def ib(tws_simulator, ib_client_factory):
    return ib_client_factory(tws_simulator)


def week_of(ib, simulator, symbol: str = "AAPL", **options):
    return ib.reqHistoricalData(stock(simulator, symbol), END, "1 W", "1 day", "TRADES", True, **options)


def model_week(simulator, symbol: str = "AAPL"):
    return [simulator.model.daily_bar(symbol, day) for day in WEEK]


def test_bars_out_of_order_are_the_same_bars_in_another_order(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", bars_out_of_order=1)
    shuffled = week_of(ib, tws_simulator)
    assert [bar.date for bar in shuffled] != WEEK
    assert_bars_equal(sorted(shuffled, key=lambda bar: bar.date), model_week(tws_simulator))
    assert [bar.date for bar in week_of(ib, tws_simulator)] == WEEK, "a count of 1: one answer"


def test_a_duplicated_bar_arrives_twice_in_a_row(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", duplicate_bar=1)
    bars = week_of(ib, tws_simulator)
    dates = [bar.date for bar in bars]
    assert len(bars) == 6 and sorted(set(dates)) == WEEK
    [twice] = [at for at in range(5) if dates[at] == dates[at + 1]]
    assert bars[twice] == bars[twice + 1]
    assert_bars_equal([bar for at, bar in enumerate(bars) if at != twice], model_week(tws_simulator))


def test_a_split_answer_ends_before_its_newest_bar_which_only_an_update_subscriber_gets(
    tws_simulator, ib
) -> None:
    tws_simulator.faults.set("AAPL", split_answer=2)
    truncated = week_of(ib, tws_simulator)
    assert_bars_equal(truncated, model_week(tws_simulator)[:-1])
    assert tws_simulator.request_log.historical(symbol="AAPL")[0].outcome == "bars:5"
    live = ib.reqHistoricalData(
        stock(tws_simulator, "AAPL"), "", "1 W", "1 day", "TRADES", True, keepUpToDate=True
    )
    run_until(ib, lambda: len(live) == 5)  # the update arrives with the answer, after its end
    assert_bars_equal(list(live), model_week(tws_simulator))
    ib.cancelHistoricalData(live)


def test_a_shuffled_split_answer_still_holds_back_its_newest_bar(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", split_answer=1, bars_out_of_order=1, duplicate_bar=1)
    truncated = week_of(ib, tws_simulator)
    newest = model_week(tws_simulator)[-1]
    assert len(truncated) == 5 and newest.date not in {bar.date for bar in truncated}
    assert sorted({bar.date for bar in truncated}) == [bar.date for bar in model_week(tws_simulator)[:-1]]


@pytest.mark.parametrize(
    ("symbol", "before", "after", "zone"),
    [
        ("AAPL", dt.date(2025, 3, 7), dt.date(2025, 3, 10), "America/New_York"),
        ("AAPL", dt.date(2025, 10, 31), dt.date(2025, 11, 3), "America/New_York"),
        ("BHP", dt.date(2025, 4, 4), dt.date(2025, 4, 7), "Australia/Sydney"),
        ("BHP", dt.date(2025, 10, 3), dt.date(2025, 10, 6), "Australia/Sydney"),
    ],
    ids=["us-spring", "us-fall", "sydney-fall", "sydney-spring"],
)
def test_bars_around_a_daylight_saving_change_keep_local_hours_and_move_in_utc(
    tws_simulator_factory, ib_client_factory, symbol, before, after, zone
) -> None:
    simulator = tws_simulator_factory(clock=lambda: LATE_2025)
    ib = ib_client_factory(simulator)
    contract = simulator.model.contract(symbol)
    exchange = contract.primary_exchange
    end = f"{after:%Y%m%d} 23:59:59 {contract.time_zone_id}"
    daily = ib.reqHistoricalData(stock(simulator, symbol), end, "4 D", "1 day", "TRADES", True)
    assert [bar.date for bar in daily] == [before, after], "no bar for the change day"
    local = ib.reqHistoricalData(stock(simulator, symbol), end, "4 D", "5 mins", "TRADES", True)
    epoch = ib.reqHistoricalData(stock(simulator, symbol), end, "4 D", "5 mins", "TRADES", True, formatDate=2)
    assert [bar.date for bar in local] == [bar.date for bar in epoch]  # the same instants
    per_session = 78 if exchange == "NASDAQ" else 72
    assert len(local) == 2 * per_session
    opens = [local[0].date.astimezone(dt.UTC), local[per_session].date.astimezone(dt.UTC)]
    assert [moment.astimezone(ZoneInfo(zone)).time() for moment in opens] == 2 * [local[0].date.time()]
    assert opens == [calendars.session_open(exchange, before), calendars.session_open(exchange, after)]
    offsets = [local[0].date.utcoffset(), local[per_session].date.utcoffset()]
    assert abs(offsets[1] - offsets[0]) == dt.timedelta(hours=1), "the zone's offset changed in between"
    for day in (before, after):
        expected = [bar for bar in simulator.model.intraday_bars(symbol, day, 300, True)]
        assert_bars_equal(
            [bar for bar in local if bar.date.astimezone(ZoneInfo(zone)).date() == day], expected
        )


def test_naive_bar_times_are_in_the_login_time_zone_without_its_name(
    tws_simulator_factory, ib_client_factory
) -> None:
    simulator = tws_simulator_factory(clock=lambda: LATE_2025, login_time_zone="Europe/London")
    simulator.faults.set("AAPL", naive_bar_times=True)
    ib = ib_client_factory(simulator)
    london = ZoneInfo("Europe/London")
    # New York has left summer time (2 Nov), London had already (26 Oct): a 5-hour gap, not 4.
    day = dt.date(2025, 11, 3)
    bars = ib.reqHistoricalData(
        stock(simulator, "AAPL"), f"{day:%Y%m%d} 23:59:59 US/Eastern", "1 D", "1 hour", "TRADES", True
    )
    assert bars[0].date == dt.datetime(2025, 11, 3, 14, 30) and bars[0].date.tzinfo is None
    expected = simulator.model.intraday_bars("AAPL", day, 3600, True)
    assert [bar.date.replace(tzinfo=london) for bar in bars] == [bar.date for bar in expected]
    [daily] = ib.reqHistoricalData(
        stock(simulator, "AAPL"), f"{day:%Y%m%d} 23:59:59 US/Eastern", "1 D", "1 day", "TRADES", True
    )
    assert daily.date == day


def test_latency_grows_with_the_historical_requests_open(tws_simulator_factory, ib_client_factory) -> None:
    simulator = tws_simulator_factory(faults={"*": {"latency_ms": 50, "latency_per_open_request_ms": 100}})
    ib = ib_client_factory(simulator)
    symbols = ["AAPL", "MSFT", "SPY", "QQQ", "NVDA"]

    async def together():
        return await asyncio.gather(
            *(
                ib.reqHistoricalDataAsync(stock(simulator, s), END, "1 W", "1 day", "TRADES", True)
                for s in symbols
            )
        )

    assert [len(bars) for bars in ib.run(together())] == [5] * 5
    records = simulator.request_log.historical()
    waits = [(record.answered_at - record.received_at).total_seconds() for record in records]
    # The n-th request to arrive found n open (itself included): 50 ms + n x 100 ms.
    assert all(wait >= 0.05 + 0.1 * n - 0.01 for n, wait in enumerate(waits, start=1)), waits


def test_fixed_latency_stays_fixed_by_default(tws_simulator_factory, ib_client_factory) -> None:
    simulator = tws_simulator_factory(faults={"*": {"latency_ms": 150}})
    ib = ib_client_factory(simulator)
    symbols = ["AAPL", "MSFT", "SPY", "QQQ", "NVDA"]

    async def together():
        return await asyncio.gather(
            *(
                ib.reqHistoricalDataAsync(stock(simulator, s), END, "1 W", "1 day", "TRADES", True)
                for s in symbols
            )
        )

    ib.run(together())
    waits = [(r.answered_at - r.received_at).total_seconds() for r in simulator.request_log.historical()]
    assert all(0.15 <= wait < 0.45 for wait in waits), waits
