"""reqHistoricalData and reqHeadTimeStamp through the real client: exact values and real calendars."""

from __future__ import annotations

import datetime as dt

import pytest
from ib_insync import RequestError, Stock

from ibkr_market_data import calendars
from tests.simulator.bar_assertions import assert_bars_equal, sessions_closing_between
from tests.simulator.waiting import run_until
from tws_simulator.pytest_plugin import SIM_NOW


def stock(simulator, symbol: str) -> Stock:
    contract = simulator.model.contract(symbol)
    return Stock(contract.symbol, contract.exchange, contract.currency)


@pytest.fixture
def ib(tws_simulator, ib_client_factory):
    client = ib_client_factory(tws_simulator)
    client.RaiseRequestErrors = True
    return client


def test_daily_bars_ending_now_have_exact_values_and_the_exchanges_sessions(tws_simulator, ib) -> None:
    model = tws_simulator.model
    for symbol in ("AAPL", "BHP", "BRK A", "GGP", "SQQQ"):
        bars = ib.reqHistoricalData(
            stock(tws_simulator, symbol), "", "30 D", "1 day", "TRADES", True, timeout=10
        )
        sessions = sessions_closing_between(
            model.contract(symbol).primary_exchange, SIM_NOW - dt.timedelta(days=30), SIM_NOW
        )
        assert [bar.date for bar in bars] == sessions
        assert_bars_equal(bars, [model.daily_bar(symbol, day) for day in sessions])
    assert tws_simulator.violations() == []


def test_special_values_survive_the_wire(tws_simulator, ib) -> None:
    def last_bar(symbol: str):
        return ib.reqHistoricalData(stock(tws_simulator, symbol), "", "5 D", "1 day", "TRADES", True)[-1]

    assert last_bar("BRK A").low > 500_000
    assert last_bar("GGP").high < 0.01
    assert last_bar("SQQQ").volume > 2**31


def test_one_day_ending_at_local_midnight_returns_exactly_that_session(tws_simulator, ib) -> None:
    day = dt.date(2025, 1, 15)
    for symbol, zone in (("BHP", "Australia/Sydney"), ("AAPL", "US/Eastern")):
        bars = ib.reqHistoricalData(
            stock(tws_simulator, symbol), f"20250115 23:59:59 {zone}", "1 D", "1 day", "TRADES", True
        )
        assert_bars_equal(bars, [tws_simulator.model.daily_bar(symbol, day)])
    utc_form = ib.reqHistoricalData(
        stock(tws_simulator, "AAPL"), "20250115-23:59:59", "1 D", "1 day", "TRADES", True
    )
    assert [bar.date for bar in utc_form] == [day]


@pytest.mark.parametrize(
    ("holiday", "closed", "open_"),
    [(dt.date(2025, 1, 27), "BHP", "AAPL"), (dt.date(2025, 1, 20), "AAPL", "BHP")],
    ids=["australia-day", "mlk-day"],
)
def test_holidays_of_each_exchange(tws_simulator, ib, holiday, closed, open_) -> None:
    zones = {"BHP": "Australia/Sydney", "AAPL": "US/Eastern"}
    end = f"{holiday:%Y%m%d} 23:59:59"
    assert not calendars.is_session(tws_simulator.model.contract(closed).primary_exchange, holiday)
    with pytest.raises(RequestError) as raised:
        ib.reqHistoricalData(
            stock(tws_simulator, closed), f"{end} {zones[closed]}", "1 D", "1 day", "TRADES", True
        )
    exchange = tws_simulator.model.contract(closed).exchange
    assert raised.value.code == 162
    assert f"HMDS query returned no data: {closed}@{exchange} Trades" in raised.value.message
    bars = ib.reqHistoricalData(
        stock(tws_simulator, open_), f"{end} {zones[open_]}", "1 D", "1 day", "TRADES", True
    )
    assert [bar.date for bar in bars] == [holiday]


def test_a_year_of_bars_matches_the_calendar_and_the_unfinished_session_is_no_bar(
    tws_simulator_factory, ib_client_factory
) -> None:
    during_session = dt.datetime(2025, 6, 27, 15, 0, tzinfo=dt.UTC)  # 11:00 in New York
    simulator = tws_simulator_factory(clock=lambda: during_session)
    ib = ib_client_factory(simulator)
    bars = ib.reqHistoricalData(stock(simulator, "AAPL"), "", "1 Y", "1 day", "TRADES", True)
    # A year back from 2025-06-27 15:00 UTC: the session of 2024-06-27 closed after that instant.
    sessions = calendars.sessions_between("NASDAQ", dt.date(2024, 6, 27), dt.date(2025, 6, 26))
    assert [bar.date for bar in bars] == sessions
    assert bars[-1].date == dt.date(2025, 6, 26)  # the session of the 27th has not closed yet


def test_sessions_after_now_never_exist(tws_simulator, ib) -> None:
    with pytest.raises(RequestError) as raised:
        ib.reqHistoricalData(
            stock(tws_simulator, "AAPL"), "20250801 23:59:59 US/Eastern", "1 W", "1 day", "TRADES", True
        )
    assert raised.value.code == 162
    bars = ib.reqHistoricalData(
        stock(tws_simulator, "AAPL"), "20250710 23:59:59 US/Eastern", "3 W", "1 day", "TRADES", True
    )
    assert bars[-1].date == dt.date(2025, 6, 27)


def test_durations_over_365_days_must_be_years(tws_simulator, ib) -> None:
    with pytest.raises(RequestError) as raised:
        ib.reqHistoricalData(stock(tws_simulator, "AAPL"), "", "400 D", "1 day", "TRADES", True)
    assert raised.value.code == 321
    assert "must be made in years" in raised.value.message


def test_no_bars_before_listing_and_head_timestamp_is_the_listing(tws_simulator, ib) -> None:
    gyg = stock(tws_simulator, "GYG")
    listed = tws_simulator.model.listing_date("GYG")
    head = ib.reqHeadTimeStamp(gyg, "TRADES", True)
    assert head == calendars.session_open("ASX", listed).replace(tzinfo=None)
    bars = ib.reqHistoricalData(gyg, "20250620 23:59:59 Australia/Sydney", "1 M", "1 day", "TRADES", True)
    assert [bar.date for bar in bars] == calendars.sessions_between("ASX", listed, dt.date(2025, 6, 20))
    with pytest.raises(RequestError) as raised:
        ib.reqHistoricalData(gyg, "20250613 23:59:59 Australia/Sydney", "1 M", "1 day", "TRADES", True)
    assert raised.value.code == 162
    epoch = ib.reqHeadTimeStamp(stock(tws_simulator, "ARM"), "TRADES", True, formatDate=2)
    assert epoch == calendars.session_open("NASDAQ", dt.date(2023, 9, 14))


@pytest.mark.parametrize("bar_size,seconds", [("30 mins", 1800), ("1 hour", 3600), ("1 min", 60)])
def test_intraday_bars_have_exact_values_and_zone_qualified_times(
    tws_simulator, ib, bar_size, seconds
) -> None:
    day = dt.date(2025, 6, 27)
    bars = ib.reqHistoricalData(
        stock(tws_simulator, "AAPL"), "20250627 23:59:59 US/Eastern", "1 D", bar_size, "TRADES", True
    )
    assert_bars_equal(bars, tws_simulator.model.intraday_bars("AAPL", day, seconds, True))
    assert str(bars[0].date.tzinfo) == "US/Eastern"
    assert bars[0].date == calendars.session_open("NASDAQ", day)
    assert bars[-1].date < calendars.session_close("NASDAQ", day)


def test_intraday_use_rth_end_and_format_date(tws_simulator, ib) -> None:
    aapl, bhp = stock(tws_simulator, "AAPL"), stock(tws_simulator, "BHP")
    end = "20250627 23:59:59 US/Eastern"
    regular = ib.reqHistoricalData(aapl, end, "1 D", "1 hour", "TRADES", True)
    extended = ib.reqHistoricalData(aapl, end, "1 D", "1 hour", "TRADES", False)
    assert len(regular) == 7 and len(extended) == 16  # 09:30-16:00 vs 04:00-20:00
    assert extended[0].date.hour == 4
    morning = ib.reqHistoricalData(aapl, "20250627 12:00:00 US/Eastern", "7200 S", "30 mins", "TRADES", True)
    assert [bar.date.strftime("%H:%M") for bar in morning] == ["10:00", "10:30", "11:00", "11:30"]
    epoch = ib.reqHistoricalData(
        bhp, "20250627 23:59:59 Australia/Sydney", "1 D", "1 hour", "TRADES", True, formatDate=2
    )
    assert epoch[0].date == calendars.session_open("ASX", dt.date(2025, 6, 27))
    assert epoch[0].date.tzinfo == dt.UTC
    midpoint = ib.reqHistoricalData(aapl, end, "1 D", "1 hour", "MIDPOINT", True)
    assert [bar.close for bar in midpoint] == [bar.close for bar in regular]
    assert {(bar.volume, bar.average, bar.barCount) for bar in midpoint} == {(-1, -1, -1)}


def test_cancel_of_an_unknown_request_gets_366(tws_simulator, ib) -> None:
    errors: list[tuple[int, int]] = []
    ib.errorEvent += lambda req_id, code, message, contract: errors.append((req_id, code))
    ib.client.cancelHistoricalData(4242)
    run_until(ib, lambda: errors)
    assert errors == [(4242, 366)]
