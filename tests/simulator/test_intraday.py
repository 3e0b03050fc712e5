"""Intraday bars agree with the daily bar and the exchange's hours, through the real client.

Each session's intraday bars are cut from one 1-minute path: over the regular session they open
at the daily open, close at the daily close, reach the daily high and low and trade the daily
volume, whatever the bar size; early closes end the session early. IB's longest duration per bar
size is enforced, and the ``intraday_mismatch`` fault breaks the agreement on demand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ib_insync import RequestError, Stock

from ibkr_market_data import calendars
from ibkr_market_data_dev.simulated_ib import shipped_listings
from tests.simulator.bar_assertions import assert_bars_equal
from tws_simulator.market import MarketModel
from tws_simulator.server import shared_model
from tws_simulator.testing import fixed_clock

FULL_DAY = dt.date(2025, 6, 27)  # a Friday, a full session on the ASX and in New York
EARLY_CLOSE = dt.date(2025, 11, 28)  # the day after Thanksgiving: New York closes at 13:00
ZONES = {"ASX": "Australia/Sydney", "NASDAQ": "America/New_York", "ARCA": "America/New_York"}

#: (bar size, bars of a full session) per exchange: NASDAQ and ARCA 09:30-16:00, ASX 10:00-16:00.
FULL_SESSION_BARS = {
    "NASDAQ": {"1 min": 390, "5 mins": 78, "1 hour": 7},
    "ARCA": {"1 min": 390, "5 mins": 78, "1 hour": 7},
    "ASX": {"1 min": 360, "5 mins": 72, "1 hour": 6},
}


def stock(simulator, symbol: str) -> Stock:
    contract = simulator.model.contract(symbol)
    return Stock(contract.symbol, contract.exchange, contract.currency)


def end_of(day: dt.date, exchange: str) -> str:
    return f"{day:%Y%m%d} 23:59:59 {ZONES[exchange]}"


def aggregate(bars: Sequence[Any]) -> tuple[Any, Any, Any, Any, Any]:
    """Return (open, high, low, close, volume) of consecutive bars, as one bar of their span."""
    return (
        bars[0].open,
        max(bar.high for bar in bars),
        min(bar.low for bar in bars),
        bars[-1].close,
        sum(bar.volume for bar in bars),
    )


def daily_values(bar: Any) -> tuple[float, float, float, float, float]:
    return (bar.open, bar.high, bar.low, bar.close, bar.volume)


def assert_valid(bars: Sequence[Any]) -> None:
    for bar in bars:
        assert 0 < bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high, bar
        assert bar.low <= bar.average <= bar.high, bar
        assert bar.volume >= 0 and (bar.barCount > 0) == (bar.volume > 0), bar


@pytest.fixture
def ib(tws_simulator, ib_client_factory):
    client = ib_client_factory(tws_simulator)
    client.RaiseRequestErrors = True
    return client


@pytest.mark.parametrize("symbol", ["BHP", "AAPL", "SPY"], ids=["asx", "nasdaq", "arca"])
def test_intraday_bars_add_up_to_the_daily_bar_and_fill_the_session(tws_simulator, ib, symbol) -> None:
    contract = tws_simulator.model.contract(symbol)
    exchange = contract.primary_exchange
    end = end_of(FULL_DAY, exchange)
    [daily] = ib.reqHistoricalData(stock(tws_simulator, symbol), end, "1 D", "1 day", "TRADES", True)
    assert daily.date == FULL_DAY
    session_open = calendars.session_open(exchange, FULL_DAY)
    for bar_size, expected_count in FULL_SESSION_BARS[exchange].items():
        bars = ib.reqHistoricalData(stock(tws_simulator, symbol), end, "1 D", bar_size, "TRADES", True)
        assert len(bars) == expected_count, bar_size
        assert aggregate(bars) == daily_values(daily), bar_size
        assert bars[0].date == session_open
        assert_valid(bars)
    assert tws_simulator.violations() == []


def test_nasdaq_hourly_bars_start_at_the_open_then_on_the_hour(tws_simulator, ib) -> None:
    bars = ib.reqHistoricalData(
        stock(tws_simulator, "AAPL"), end_of(FULL_DAY, "NASDAQ"), "1 D", "1 hour", "TRADES", True
    )
    starts = [bar.date.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M") for bar in bars]
    assert starts == ["09:30", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]


def test_a_full_asx_day_is_360_minutes_from_10_to_16_sydney(tws_simulator, ib) -> None:
    bars = ib.reqHistoricalData(
        stock(tws_simulator, "BHP"), end_of(FULL_DAY, "ASX"), "1 D", "1 min", "TRADES", True
    )
    sydney = [bar.date.astimezone(ZoneInfo("Australia/Sydney")) for bar in bars]
    assert len(bars) == 360
    assert (sydney[0].strftime("%H:%M"), sydney[-1].strftime("%H:%M")) == ("10:00", "15:59")


def test_the_early_close_ends_the_session_at_13_new_york(tws_simulator_factory, ib_client_factory) -> None:
    simulator = tws_simulator_factory(clock=fixed_clock(dt.datetime(2025, 12, 1, 12, tzinfo=dt.UTC)))
    ib = ib_client_factory(simulator)
    ib.RaiseRequestErrors = True
    aapl, end = stock(simulator, "AAPL"), end_of(EARLY_CLOSE, "NASDAQ")
    [daily] = ib.reqHistoricalData(aapl, end, "1 D", "1 day", "TRADES", True)
    minutes = ib.reqHistoricalData(aapl, end, "1 D", "1 min", "TRADES", True)
    hours = ib.reqHistoricalData(aapl, end, "1 D", "1 hour", "TRADES", True)
    new_york = ZoneInfo("America/New_York")
    assert len(minutes) == 210
    assert minutes[-1].date.astimezone(new_york).strftime("%H:%M") == "12:59"
    assert [bar.date.astimezone(new_york).strftime("%H:%M") for bar in hours] == [
        "09:30",
        "10:00",
        "11:00",
        "12:00",
    ]
    assert aggregate(minutes) == aggregate(hours) == daily_values(daily)
    assert calendars.session_close("NASDAQ", EARLY_CLOSE).astimezone(new_york).hour == 13


@pytest.mark.parametrize("symbol", ["AAPL", "BHP"])
def test_five_minute_and_hourly_bars_are_aggregations_of_one_minute_bars(tws_simulator, ib, symbol) -> None:
    exchange = tws_simulator.model.contract(symbol).primary_exchange
    end = end_of(FULL_DAY, exchange)
    minutes = ib.reqHistoricalData(stock(tws_simulator, symbol), end, "1 D", "1 min", "TRADES", True)
    for bar_size, seconds in (("5 mins", 300), ("1 hour", 3600)):
        longer = ib.reqHistoricalData(stock(tws_simulator, symbol), end, "1 D", bar_size, "TRADES", True)
        ends = [bar.date for bar in longer[1:]] + [calendars.session_close(exchange, FULL_DAY)]
        for bar, bar_end in zip(longer, ends, strict=True):
            group = [minute for minute in minutes if bar.date <= minute.date < bar_end]
            assert len(group) == (bar_end - bar.date).total_seconds() // 60 <= seconds // 60
            assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == aggregate(group), (bar_size, bar)
        assert_valid(longer)


def test_extended_hours_are_extra_bars_with_small_volume(tws_simulator, ib) -> None:
    aapl, end = stock(tws_simulator, "AAPL"), end_of(FULL_DAY, "NASDAQ")
    [daily] = ib.reqHistoricalData(aapl, end, "1 D", "1 day", "TRADES", True)
    regular = ib.reqHistoricalData(aapl, end, "1 D", "5 mins", "TRADES", True)
    extended = ib.reqHistoricalData(aapl, end, "1 D", "5 mins", "TRADES", False)
    session_open = calendars.session_open("NASDAQ", FULL_DAY)
    session_close = calendars.session_close("NASDAQ", FULL_DAY)
    inside = [bar for bar in extended if session_open <= bar.date < session_close]
    outside = [bar for bar in extended if not session_open <= bar.date < session_close]
    assert list(inside) == list(regular)  # the regular session does not depend on useRTH
    assert len(outside) == (330 + 240) // 5  # 04:00-09:30 and 16:00-20:00
    assert_valid(extended)
    assert all(daily.low <= bar.low and bar.high <= daily.high for bar in outside)
    mean_regular_volume = daily.volume / len(regular)
    assert max(bar.volume for bar in outside) < mean_regular_volume / 4


@pytest.mark.parametrize(
    ("bar_size", "duration", "allowed"),
    [
        ("1 min", "86400 S", True),
        ("1 min", "1 D", True),
        ("1 min", "2 D", False),
        ("5 mins", "7 D", True),
        ("5 mins", "1 W", True),
        ("5 mins", "8 D", False),
        ("5 mins", "1 M", False),
        ("1 hour", "30 D", True),
        ("1 hour", "1 M", True),
        ("1 hour", "2 M", False),
        ("30 secs", "28800 S", True),
        ("30 secs", "1 D", False),
        ("1 day", "2 Y", True),
    ],
)
def test_durations_longer_than_ibs_step_sizes_get_162(tws_simulator, ib, bar_size, duration, allowed) -> None:
    request = (
        stock(tws_simulator, "AAPL"),
        "20250627 16:00:00 US/Eastern",
        duration,
        bar_size,
        "TRADES",
        True,
    )
    if allowed:
        assert len(ib.reqHistoricalData(*request)) > 0
        return
    with pytest.raises(RequestError) as raised:
        ib.reqHistoricalData(*request)
    assert raised.value.code == 162
    assert raised.value.message == "Historical Market Data Service error message:Time length exceed max."
    [record] = tws_simulator.request_log.historical(symbol="AAPL")
    assert record.outcome == "error:162"


def test_intraday_mismatch_breaks_only_the_intraday_bars_of_its_symbol(tws_simulator, ib) -> None:
    aapl, msft, end = stock(tws_simulator, "AAPL"), stock(tws_simulator, "MSFT"), end_of(FULL_DAY, "NASDAQ")
    clean = ib.reqHistoricalData(aapl, end, "1 D", "1 hour", "TRADES", True)
    [daily] = ib.reqHistoricalData(aapl, end, "1 D", "1 day", "TRADES", True)
    tws_simulator.faults.set("AAPL", intraday_mismatch=True)

    assert_bars_equal(
        ib.reqHistoricalData(aapl, end, "1 W", "1 day", "TRADES", True),
        tws_simulator.model.daily_bars("AAPL", dt.date(2025, 6, 23), FULL_DAY),
    )
    [daily_with_fault] = ib.reqHistoricalData(aapl, end, "1 D", "1 day", "TRADES", True)
    assert daily_values(daily_with_fault) == daily_values(daily)
    for bar_size in ("1 min", "1 hour"):
        wrong = ib.reqHistoricalData(aapl, end, "1 D", bar_size, "TRADES", True)
        assert_valid(wrong)
        open_, high, low, close, volume = aggregate(wrong)
        assert (open_, low, close) == (daily.open, daily.low, daily.close)
        raised_high = float(
            (Decimal(str(daily.high)) * Decimal("1.05")).quantize(Decimal("0.01"), ROUND_CEILING)
        )
        assert high == raised_high and sum(bar.high > daily.high for bar in wrong) == 1
        assert daily.volume / 2 - len(wrong) <= volume <= daily.volume / 2
    hourly = ib.reqHistoricalData(aapl, end, "1 D", "1 hour", "TRADES", True)
    assert [bar.volume for bar in hourly] == [bar.volume // 2 for bar in clean]
    [msft_daily] = ib.reqHistoricalData(msft, end, "1 D", "1 day", "TRADES", True)
    msft_hours = ib.reqHistoricalData(msft, end, "1 D", "1 hour", "TRADES", True)
    assert aggregate(msft_hours) == daily_values(msft_daily)  # another symbol is unaffected


def test_intraday_mismatch_leaves_extended_hours_and_daily_counts_alone(tws_simulator, ib) -> None:
    aapl, end = stock(tws_simulator, "AAPL"), end_of(FULL_DAY, "NASDAQ")
    clean = ib.reqHistoricalData(aapl, end, "1 D", "5 mins", "TRADES", False)
    tws_simulator.faults.set("AAPL", intraday_mismatch=1)
    ib.reqHistoricalData(aapl, end, "1 D", "1 day", "TRADES", True)  # does not use up the count
    ib.reqHistoricalData(aapl, "20250627 12:00:00 US/Eastern", "1800 S", "30 secs", "TRADES", True)
    wrong = ib.reqHistoricalData(aapl, end, "1 D", "5 mins", "TRADES", False)
    session_open = calendars.session_open("NASDAQ", FULL_DAY)
    session_close = calendars.session_close("NASDAQ", FULL_DAY)
    for before, after in zip(clean, wrong, strict=True):
        if session_open <= before.date < session_close:
            assert after.volume == before.volume // 2
        else:
            assert after == before
    again = ib.reqHistoricalData(aapl, end, "1 D", "5 mins", "TRADES", False)
    assert list(again) == list(clean), "a count of 1 changes one intraday answer only"


def test_coarse_bars_disagree_takes_volume_off_bars_of_five_minutes_and_longer_only(
    tws_simulator, ib
) -> None:
    aapl, end = stock(tws_simulator, "AAPL"), end_of(FULL_DAY, "NASDAQ")
    sizes = ("1 min", "5 mins", "1 hour")
    clean = {size: ib.reqHistoricalData(aapl, end, "1 D", size, "TRADES", True) for size in sizes}
    tws_simulator.faults.set("AAPL", coarse_bars_disagree=True)

    assert list(ib.reqHistoricalData(aapl, end, "1 D", "1 min", "TRADES", True)) == list(clean["1 min"])
    for size in ("5 mins", "1 hour"):
        wrong = ib.reqHistoricalData(aapl, end, "1 D", size, "TRADES", True)
        assert_valid(wrong)
        assert [bar.volume for bar in wrong] == [
            bar.volume - max(1, bar.volume // 100) for bar in clean[size]
        ]
        assert [bar.high for bar in wrong] == [bar.high for bar in clean[size]], "prices left alone"


# -- the model itself: every symbol, bars under a minute, determinism ---------------------------


@pytest.fixture(scope="module")
def model() -> MarketModel:
    return shared_model(shipped_listings(), 42)


def test_every_symbols_intraday_bars_add_up_to_its_daily_bar(model: MarketModel) -> None:
    christmas_eve = dt.date(2025, 12, 24)  # the ASX closes at 14:10, New York at 13:00
    sessions = [(contract.symbol, FULL_DAY) for contract in model.contracts]
    sessions += [
        (symbol, day)
        for symbol in ("BHP", "GGP", "AAPL", "SPY", "BRK A")
        for day in (EARLY_CLOSE, christmas_eve)
    ]
    for symbol, day in sessions:
        daily = model.daily_bar(symbol, day)
        expected = (daily.open, daily.high, daily.low, daily.close, daily.volume)
        for seconds in (60, 300, 3600):
            bars = model.intraday_bars(symbol, day, seconds, True)
            assert aggregate(bars) == expected, (symbol, day, seconds)
            assert all(bar.is_valid and bar.low <= bar.wap <= bar.high for bar in bars)
    assert len(model.intraday_bars("BHP", christmas_eve, 60, True)) == 250
    assert len(model.intraday_bars("BHP", EARLY_CLOSE, 60, True)) == 360  # a full day in Sydney


@pytest.mark.parametrize("seconds", [1, 5, 30])
def test_bars_under_a_minute_split_each_minute_exactly(model: MarketModel, seconds: int) -> None:
    minutes = model.intraday_bars("AAPL", FULL_DAY, 60, True)
    parts = model.intraday_bars("AAPL", FULL_DAY, seconds, True)
    per_minute = 60 // seconds
    assert len(parts) == 390 * per_minute
    assert all(bar.is_valid and bar.low <= bar.wap <= bar.high for bar in parts)
    for at, minute in enumerate(minutes):
        group = parts[at * per_minute : (at + 1) * per_minute]
        assert group[0].date == minute.date
        assert aggregate(group) == (minute.open, minute.high, minute.low, minute.close, minute.volume)


def test_bars_under_a_minute_in_regular_hours_do_not_depend_on_use_rth(model: MarketModel) -> None:
    regular = model.intraday_bars("AAPL", FULL_DAY, 30, True)
    extended = model.intraday_bars("AAPL", FULL_DAY, 30, False)
    session_open = calendars.session_open("NASDAQ", FULL_DAY)
    session_close = calendars.session_close("NASDAQ", FULL_DAY)
    assert [bar for bar in extended if session_open <= bar.date < session_close] == list(regular)
    assert len(extended) == 2 * (330 + 390 + 240)  # 04:00-20:00 New York in half minutes


def test_intraday_bars_are_the_same_from_a_fresh_model_and_differ_by_seed(model: MarketModel) -> None:
    fresh = MarketModel(shipped_listings(), 42)
    assert fresh.intraday_bars("CBA", FULL_DAY, 300, True) == model.intraday_bars("CBA", FULL_DAY, 300, True)
    other_seed = MarketModel(shipped_listings(), 7)
    assert other_seed.intraday_bars("CBA", FULL_DAY, 300, True) != model.intraday_bars(
        "CBA", FULL_DAY, 300, True
    )
