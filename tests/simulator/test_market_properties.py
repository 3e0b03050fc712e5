"""Market properties through the real client: what IB does to a symbol's data, and the served model.

Illiquid sessions and minutes, halts, late corrections, split re-basing and contract changes, each
compared with ``ServedMarket`` (the simulator's own model of what IB serves as of a moment).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ib_insync import Contract, RequestError, Stock

from ibkr_market_data import calendars
from tests.simulator.bar_assertions import assert_bars_equal
from tws_simulator.testing import SettableClock

NEW_YORK = ZoneInfo("America/New_York")
WEEK_END = "20250627 23:59:59 US/Eastern"  # the week of 2025-06-23 .. 27
AFTER = dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC)


def stock(simulator, symbol: str) -> Stock:
    contract = simulator.model.contract(symbol)
    return Stock(contract.symbol, contract.exchange, contract.currency)


def end_of(day: dt.date) -> str:
    return f"{day:%Y%m%d} 23:59:59 US/Eastern"


def aggregate(bars: Sequence[Any]) -> tuple[float, float, float, float, float]:
    """(open, high, low, close, volume) of consecutive bars, as one bar of their span."""
    return (
        bars[0].open,
        max(bar.high for bar in bars),
        min(bar.low for bar in bars),
        bars[-1].close,
        sum(bar.volume for bar in bars),
    )


def daily_values(bar: Any) -> tuple[float, float, float, float, float]:
    return (float(bar.open), float(bar.high), float(bar.low), float(bar.close), float(bar.volume))


@pytest.fixture
def start(tws_simulator_factory, ib_client_factory):
    """Start a simulator with ``faults`` (and ``clock``) and connect a client raising request errors."""

    def started(faults: dict, clock: Any = None, **overrides: Any):
        simulator = tws_simulator_factory(faults=faults, clock=clock or (lambda: AFTER), **overrides)
        ib = ib_client_factory(simulator)
        ib.RaiseRequestErrors = True
        return simulator, ib

    return started


def error_of(request) -> RequestError:
    with pytest.raises(RequestError) as raised:
        request()
    return raised.value


# -- illiquid sessions and minutes ------------------------------------------------------------------


def test_sessions_without_a_trade_are_absent_from_a_range_and_a_one_session_request_is_162(start) -> None:
    quiet = [dt.date(2025, 6, 24), dt.date(2025, 6, 26)]
    simulator, ib = start({"AAPL": {"illiquid_sessions": [day.isoformat() for day in quiet]}})
    aapl = stock(simulator, "AAPL")
    week = calendars.sessions_between("NASDAQ", dt.date(2025, 6, 23), dt.date(2025, 6, 27))
    bars = ib.reqHistoricalData(aapl, WEEK_END, "1 W", "1 day", "TRADES", True)
    assert [bar.date for bar in bars] == [day for day in week if day not in quiet]
    assert_bars_equal(bars, simulator.served.daily_bars("AAPL", week[0], week[-1], AFTER))
    assert_bars_equal(bars, [simulator.model.daily_bar("AAPL", day) for day in week if day not in quiet])
    one = error_of(lambda: ib.reqHistoricalData(aapl, end_of(quiet[0]), "1 D", "1 day", "TRADES", True))
    assert one.code == 162 and "HMDS query returned no data: AAPL@SMART Trades" in one.message
    minutes = error_of(lambda: ib.reqHistoricalData(aapl, end_of(quiet[0]), "1 D", "1 min", "TRADES", True))
    assert minutes.code == 162 and "HMDS query returned no data" in minutes.message
    assert (
        len(ib.reqHistoricalData(aapl, end_of(dt.date(2025, 6, 25)), "1 D", "1 min", "TRADES", True)) == 390
    )
    assert simulator.served.traded("AAPL", quiet[0]) is False
    assert len(ib.reqHistoricalData(stock(simulator, "MSFT"), WEEK_END, "1 W", "1 day", "TRADES", True)) == 5


def test_a_share_of_sessions_without_a_trade_is_seeded_and_the_listing_session_trades(
    start, tws_simulator_factory
) -> None:
    simulator, ib = start({"GYG": {"illiquid_sessions": 0.3}})
    gyg = stock(simulator, "GYG")
    listed = simulator.model.listing_date("GYG")
    bars = ib.reqHistoricalData(gyg, "20250627 23:59:59 Australia/Sydney", "1 M", "1 day", "TRADES", True)
    sessions = calendars.sessions_between("ASX", listed, dt.date(2025, 6, 27))
    missing = [day for day in sessions if day not in {bar.date for bar in bars}]
    assert bars[0].date == listed, "the listing session always trades"
    assert 0 < len(missing) < len(sessions) / 2
    assert missing == [day for day in sessions if not simulator.served.traded("GYG", day)]
    assert_bars_equal(bars, simulator.served.daily_bars("GYG", listed, dt.date(2025, 6, 27), AFTER))
    other_seed = tws_simulator_factory(seed=7, faults={"GYG": {"illiquid_sessions": 0.3}})
    assert [day for day in sessions if not other_seed.served.traded("GYG", day)] != missing


def test_minutes_without_a_trade_are_absent_and_the_session_still_adds_up(start) -> None:
    day = dt.date(2025, 6, 25)
    simulator, ib = start({"SPY": {"illiquid_minutes": 0.3}})
    spy = stock(simulator, "SPY")
    minutes = ib.reqHistoricalData(spy, end_of(day), "1 D", "1 min", "TRADES", True)
    quiet = simulator.served.view(simulator.model.contract("SPY"), AFTER).quiet_minutes(day)
    assert 60 < len(quiet) < 180
    assert len(minutes) == 390 - len(quiet)
    assert {bar.date.timestamp() for bar in minutes}.isdisjoint(quiet)
    assert_bars_equal(minutes, simulator.served.intraday_bars("SPY", day, 60, True, AFTER))
    [daily] = ib.reqHistoricalData(spy, end_of(day), "1 D", "1 day", "TRADES", True)
    assert aggregate(minutes) == daily_values(daily)
    fives = ib.reqHistoricalData(spy, end_of(day), "1 D", "5 mins", "TRADES", True)
    assert all(bar.date.minute % 5 == 0 for bar in fives), "bars are dated by their period"
    for five in fives:
        inside = [bar for bar in minutes if five.date <= bar.date < five.date + dt.timedelta(minutes=5)]
        assert aggregate([five]) == aggregate(inside)


# -- halts ------------------------------------------------------------------------------------------


def test_a_halt_leaves_no_intraday_bars_inside_it_and_the_daily_bar_there(start) -> None:
    day = dt.date(2025, 6, 25)
    simulator, ib = start({"AAPL": {"halts": {"date": day.isoformat(), "from": "11:00", "to": "13:30"}}})
    aapl = stock(simulator, "AAPL")
    halt_start = dt.datetime.combine(day, dt.time(11), NEW_YORK)
    halt_end = dt.datetime.combine(day, dt.time(13, 30), NEW_YORK)
    minutes = ib.reqHistoricalData(aapl, end_of(day), "1 D", "1 min", "TRADES", True)
    assert len(minutes) == 390 - 150
    assert not [bar for bar in minutes if halt_start <= bar.date < halt_end]
    assert minutes[[bar.date for bar in minutes].index(halt_end)].volume > 0, "trading resumes at 13:30"
    [daily] = ib.reqHistoricalData(aapl, end_of(day), "1 D", "1 day", "TRADES", True)
    assert_bars_equal([daily], [simulator.model.daily_bar("AAPL", day)])
    assert aggregate(minutes) == daily_values(daily)
    hours = ib.reqHistoricalData(aapl, end_of(day), "1 D", "1 hour", "TRADES", True)
    assert [bar.date.astimezone(NEW_YORK).hour for bar in hours] == [9, 10, 13, 14, 15]
    before = ib.reqHistoricalData(
        aapl, f"{day:%Y%m%d} 12:00:00 US/Eastern", "7200 S", "1 min", "TRADES", True
    )
    assert before[-1].date == halt_start - dt.timedelta(minutes=1), "the minute before the halt is whole"
    next_day = dt.date(2025, 6, 26)
    untouched = ib.reqHistoricalData(aapl, end_of(next_day), "1 D", "1 min", "TRADES", True)
    assert_bars_equal(untouched, simulator.model.intraday_bars("AAPL", next_day, 60, True))


# -- late corrections -------------------------------------------------------------------------------


def test_a_sessions_bar_is_preliminary_for_n_days_then_final(start) -> None:
    clock = SettableClock(dt.datetime(2025, 6, 25, 21, tzinfo=dt.UTC))  # an hour after the close
    simulator, ib = start({"AAPL": {"late_correction_days": 2}}, clock=clock)
    aapl = stock(simulator, "AAPL")
    model = simulator.model
    week = calendars.sessions_between("NASDAQ", dt.date(2025, 6, 19), dt.date(2025, 6, 25))
    first = ib.reqHistoricalData(aapl, "", "1 W", "1 day", "TRADES", True)
    assert [bar.date for bar in first] == week
    assert_bars_equal(first, simulator.served.daily_bars("AAPL", week[0], week[-1], clock()))
    final, preliminary = first[:-2], first[-2:]  # closed more than two days ago, or not
    assert_bars_equal(final, [model.daily_bar("AAPL", day) for day in week[:-2]])
    for bar in preliminary:
        open_, high, low, close, volume = daily_values(model.daily_bar("AAPL", bar.date))
        assert (bar.open, bar.low, bar.close) == (open_, low, close)
        assert (bar.volume < volume) != (bar.high > high), "late prints missing, or a print to bust"
    clock.advance(dt.timedelta(days=2))
    again = ib.reqHistoricalData(aapl, end_of(week[-1]), "1 W", "1 day", "TRADES", True)
    assert_bars_equal(again, [model.daily_bar("AAPL", day) for day in week])


def test_both_kinds_of_correction_occur_and_intraday_bars_are_served_final(start) -> None:
    clock = SettableClock(AFTER)
    simulator, ib = start({"AAPL": {"late_correction_days": 400}}, clock=clock)
    bars = ib.reqHistoricalData(stock(simulator, "AAPL"), "", "6 M", "1 day", "TRADES", True)
    truths = [simulator.model.daily_bar("AAPL", bar.date) for bar in bars]
    pairs = [(bar, daily_values(truth)) for bar, truth in zip(bars, truths, strict=True)]
    volume_only = [bar for bar, (_, high, _, _, volume) in pairs if bar.volume < volume and bar.high == high]
    busted = [bar for bar, (_, high, _, _, volume) in pairs if bar.high > high and bar.volume > volume]
    assert volume_only and busted and len(volume_only) + len(busted) == len(bars)
    day = bars[-1].date
    minutes = ib.reqHistoricalData(stock(simulator, "AAPL"), end_of(day), "1 D", "1 min", "TRADES", True)
    assert_bars_equal(minutes, simulator.model.intraday_bars("AAPL", day, 60, True))


# -- split re-basing --------------------------------------------------------------------------------


def test_a_split_rebases_every_earlier_trades_bar_from_its_date_on(start) -> None:
    clock = SettableClock(dt.datetime(2025, 6, 13, 21, tzinfo=dt.UTC))  # the Friday before
    simulator, ib = start({"AAPL": {"split": {"date": "2025-06-16", "ratio": 4}}}, clock=clock)
    aapl, model = stock(simulator, "AAPL"), simulator.model
    sessions = calendars.sessions_between("NASDAQ", dt.date(2025, 6, 2), dt.date(2025, 6, 13))
    old_basis = ib.reqHistoricalData(aapl, end_of(sessions[-1]), "2 W", "1 day", "TRADES", True)
    assert_bars_equal(old_basis, [model.daily_bar("AAPL", day) for day in sessions])
    clock.set(AFTER)
    rebased = ib.reqHistoricalData(aapl, end_of(sessions[-1]), "2 W", "1 day", "TRADES", True)
    assert_bars_equal(rebased, simulator.served.daily_bars("AAPL", sessions[0], sessions[-1], AFTER))
    for old, new in zip(old_basis, rebased, strict=True):
        assert new.date == old.date
        assert [old.open, old.high, old.low, old.close] == pytest.approx(
            [4 * new.open, 4 * new.high, 4 * new.low, 4 * new.close], rel=1e-8
        )
        assert new.volume == 4 * old.volume and new.barCount == old.barCount
    after = ib.reqHistoricalData(aapl, end_of(dt.date(2025, 6, 20)), "1 W", "1 day", "TRADES", True)
    truth = model.daily_bar("AAPL", after[-1].date)
    assert after[-1].close == pytest.approx(float(truth.close) / 4, rel=1e-8), "later sessions trade new"
    day = sessions[-1]
    minutes = ib.reqHistoricalData(aapl, end_of(day), "1 D", "1 min", "TRADES", True)
    assert aggregate(minutes) == pytest.approx(daily_values(rebased[-1]), rel=1e-12)


def test_a_reverse_split_multiplies_prices_and_the_adjustment_is_exact_to_8_places(start) -> None:
    simulator, ib = start({"GGP": {"split": {"date": "2025-06-02", "ratio": 0.1}}})
    bars = ib.reqHistoricalData(
        stock(simulator, "GGP"), "20250530 23:59:59 Australia/Sydney", "1 W", "1 day", "TRADES", True
    )
    for bar in bars:
        truth = simulator.model.daily_bar("GGP", bar.date)
        assert Decimal(repr(bar.close)) == truth.close * 10
        assert bar.volume == round(truth.volume / 10)


# -- contract changes -------------------------------------------------------------------------------


def test_a_delisted_contract_has_no_definition_and_its_history_answers_162_or_200(start) -> None:
    clock = SettableClock(dt.datetime(2025, 6, 18, 21, tzinfo=dt.UTC))
    simulator, ib = start({"MSFT": {"delisting": "2025-06-20"}}, clock=clock)
    msft = stock(simulator, "MSFT")
    [details] = ib.reqContractDetails(msft)
    by_con_id = Contract(conId=details.contract.conId, exchange="SMART")
    assert len(ib.reqHistoricalData(by_con_id, "", "1 W", "1 day", "TRADES", True)) == 5
    clock.set(dt.datetime(2025, 6, 20, 1, tzinfo=dt.UTC))  # 21:00 in New York, still the 19th there
    assert len(ib.reqHistoricalData(by_con_id, "", "1 W", "1 day", "TRADES", True)) == 4  # 19th: a holiday
    clock.set(AFTER)
    gone = error_of(lambda: ib.reqContractDetails(msft))
    assert gone.code == 200 and "No security definition has been found" in gone.message
    history = error_of(lambda: ib.reqHistoricalData(by_con_id, "", "1 W", "1 day", "TRADES", True))
    assert history.code == 162 and "HMDS query returned no data: MSFT@SMART Trades" in history.message
    by_symbol = error_of(lambda: ib.reqHistoricalData(msft, "", "1 W", "1 day", "TRADES", True))
    assert by_symbol.code == 200
    head = error_of(lambda: ib.reqHeadTimeStamp(by_con_id, "TRADES", True))
    assert head.code == 162
    assert simulator.served.contract("MSFT", AFTER) is None
    assert simulator.served.daily_bars("MSFT", dt.date(2025, 6, 1), dt.date(2025, 6, 30), AFTER) == []
    simulator.faults.set("MSFT", delisting={"date": "2025-06-20", "error": 200})
    assert error_of(lambda: ib.reqHistoricalData(by_con_id, "", "1 W", "1 day", "TRADES", True)).code == 200


def test_a_con_id_change_gives_the_symbol_a_new_con_id_from_its_date(start) -> None:
    clock = SettableClock(dt.datetime(2025, 6, 13, 21, tzinfo=dt.UTC))
    simulator, ib = start(
        {"AAPL": {"con_id_change": {"date": "2025-06-16", "con_id": 9_999_001}}}, clock=clock
    )
    aapl = stock(simulator, "AAPL")
    old, new = Contract(conId=200001, exchange="SMART"), Contract(conId=9_999_001, exchange="SMART")
    [before] = ib.reqContractDetails(aapl)
    assert before.contract.conId == 200001
    assert len(ib.reqHistoricalData(old, "", "1 W", "1 day", "TRADES", True)) == 5
    assert error_of(lambda: ib.reqHistoricalData(new, "", "1 W", "1 day", "TRADES", True)).code == 200
    clock.set(AFTER)
    [after] = ib.reqContractDetails(aapl)
    assert (after.contract.symbol, after.contract.conId) == ("AAPL", 9_999_001)
    assert error_of(lambda: ib.reqContractDetails(old)).code == 200
    assert error_of(lambda: ib.reqHistoricalData(old, "", "1 W", "1 day", "TRADES", True)).code == 200
    bars = ib.reqHistoricalData(new, WEEK_END, "1 W", "1 day", "TRADES", True)
    week = calendars.sessions_between("NASDAQ", dt.date(2025, 6, 23), dt.date(2025, 6, 27))
    assert_bars_equal(bars, [simulator.model.daily_bar("AAPL", day) for day in week])
    assert simulator.request_log.historical(con_id=9_999_001)[-1].symbol == "AAPL"
    assert simulator.served.contract("AAPL", AFTER).con_id == 9_999_001
