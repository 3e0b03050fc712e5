"""Dividends and ``ADJUSTED_LAST`` through the real client, against the served model.

ADJUSTED_LAST is TRADES (split-adjusted as of now) times each session's dividend factor, one
``1 - amount / close before the ex-date`` per later ex-date; it refuses an end date as IB does.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from ib_insync import RequestError, Stock

from ibkr_market_data import calendars
from tests.simulator.bar_assertions import assert_bars_equal
from tws_simulator.faults import UnknownFault, validate_settings
from tws_simulator.properties import BadPropertyValue
from tws_simulator.testing import SettableClock

NOW = dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC)
NEW_YORK = ZoneInfo("America/New_York")
FIRST_EX, SPLIT, SECOND_EX = dt.date(2024, 11, 8), dt.date(2025, 2, 3), dt.date(2025, 5, 12)
#: Two dividends as paid (the first on the basis before a 4-for-1 split, the second after it).
ACTIONS = {
    "dividend": [
        {"date": FIRST_EX.isoformat(), "amount": 0.96},
        {"date": SECOND_EX.isoformat(), "amount": 0.26},
    ],
    "split": {"date": SPLIT.isoformat(), "ratio": 4},
}


@pytest.fixture
def start(tws_simulator_factory, ib_client_factory):
    """Start a simulator with ``faults`` and ``clock``; connect a client raising request errors."""

    def started(faults: dict, clock=None):
        simulator = tws_simulator_factory(faults=faults, clock=clock or (lambda: NOW))
        ib = ib_client_factory(simulator)
        ib.RaiseRequestErrors = True
        return simulator, ib

    return started


def aapl(simulator) -> Stock:
    contract = simulator.model.contract("AAPL")
    return Stock(contract.symbol, contract.exchange, contract.currency)


def previous_session(day: dt.date) -> dt.date:
    return calendars.sessions_between("NASDAQ", day - dt.timedelta(days=10), day - dt.timedelta(days=1))[-1]


def test_adjusted_last_is_trades_times_one_minus_dividend_over_the_close_before_each_later_ex_date(
    start,
) -> None:
    simulator, ib = start({"AAPL": ACTIONS})
    trades = {
        bar.date: bar for bar in ib.reqHistoricalData(aapl(simulator), "", "1 Y", "1 day", "TRADES", True)
    }
    adjusted = ib.reqHistoricalData(aapl(simulator), "", "1 Y", "1 day", "ADJUSTED_LAST", True)
    first, last = adjusted[0].date, adjusted[-1].date
    assert len(adjusted) == len(trades) > 240
    assert_bars_equal(adjusted, simulator.served.adjusted_daily_bars("AAPL", first, last, NOW))

    # The factors, from the TRADES bars received: both are served on today's split basis.
    first_step = 1 - Decimal("0.96") / 4 / Decimal(repr(trades[previous_session(FIRST_EX)].close))
    second_step = 1 - Decimal("0.26") / Decimal(repr(trades[previous_session(SECOND_EX)].close))
    steps = {"before both": first_step * second_step, "between": second_step, "after both": Decimal(1)}
    seen = set()
    for bar in adjusted:
        raw = trades[bar.date]
        period = "before both" if bar.date < FIRST_EX else "between" if bar.date < SECOND_EX else "after both"
        seen.add(period)
        factor = steps[period]
        for field in ("open", "high", "low", "close", "average"):
            expected = Decimal(repr(getattr(raw, field))) * factor
            assert abs(Decimal(repr(getattr(bar, field))) - expected) <= Decimal("0.5e-8"), (bar.date, field)
        assert (bar.volume, bar.barCount) == (raw.volume, raw.barCount), "dividends leave volume alone"
    assert seen == set(steps)
    assert adjusted[-1] == trades[last], "the sessions after the last ex-date are TRADES exactly"


def test_adjusted_last_refuses_an_end_date_with_ibs_321(start) -> None:
    simulator, ib = start({"AAPL": ACTIONS})
    with pytest.raises(RequestError) as refused:
        ib.reqHistoricalData(
            aapl(simulator), "20250627 23:59:59 US/Eastern", "1 Y", "1 day", "ADJUSTED_LAST", True
        )
    assert refused.value.code == 321
    assert refused.value.message == (
        "Error validating request:-'bP' : cause - End date not supported with adjusted last"
    )
    assert simulator.request_log.historical()[-1].outcome.startswith("error:321")


def test_a_dividend_counts_from_its_ex_date_and_trades_never_sees_it(start) -> None:
    clock = SettableClock(dt.datetime(2025, 5, 9, 21, tzinfo=dt.UTC))  # the Friday before SECOND_EX
    simulator, ib = start({"AAPL": {"dividend": ACTIONS["dividend"][1]}}, clock=clock)
    before = ib.reqHistoricalData(aapl(simulator), "", "1 M", "1 day", "ADJUSTED_LAST", True)
    assert_bars_equal(before, simulator.model.daily_bars("AAPL", before[0].date, before[-1].date))
    clock.set(NOW)
    trades = ib.reqHistoricalData(aapl(simulator), "", "3 M", "1 day", "TRADES", True)
    assert_bars_equal(trades, simulator.model.daily_bars("AAPL", trades[0].date, trades[-1].date))
    adjusted = ib.reqHistoricalData(aapl(simulator), "", "3 M", "1 day", "ADJUSTED_LAST", True)
    changed = [bar.date for bar, raw in zip(adjusted, trades, strict=True) if bar.close != raw.close]
    assert changed == [bar.date for bar in trades if bar.date < SECOND_EX]


def test_intraday_adjusted_last_takes_its_sessions_dividend_factor(start) -> None:
    after_ex = dt.datetime(2025, 5, 13, 12, tzinfo=dt.UTC)
    simulator, ib = start({"AAPL": {"dividend": ACTIONS["dividend"][1]}}, clock=lambda: after_ex)
    day = previous_session(SECOND_EX)
    end = f"{day:%Y%m%d} 23:59:59 US/Eastern"
    trades = ib.reqHistoricalData(aapl(simulator), end, "1 D", "5 mins", "TRADES", True)
    # IB refuses an end date with ADJUSTED_LAST: ask back from now, and keep the session's bars.
    adjusted = [
        bar
        for bar in ib.reqHistoricalData(aapl(simulator), "", "1 W", "5 mins", "ADJUSTED_LAST", True)
        if bar.date.astimezone(NEW_YORK).date() == day
    ]
    factor = simulator.served.dividend_factor("AAPL", day, after_ex)
    assert factor < 1
    assert len(adjusted) == len(trades) == 78
    for bar, raw in zip(adjusted, trades, strict=True):
        assert bar.date == raw.date and bar.volume == raw.volume
        assert abs(Decimal(repr(bar.close)) - Decimal(repr(raw.close)) * factor) <= Decimal("0.5e-8")


def test_without_dividends_adjusted_last_is_trades_byte_for_byte(start) -> None:
    simulator, ib = start({"AAPL": {"split": ACTIONS["split"]}})
    trades = ib.reqHistoricalData(aapl(simulator), "", "1 Y", "1 day", "TRADES", True)
    adjusted = ib.reqHistoricalData(aapl(simulator), "", "1 Y", "1 day", "ADJUSTED_LAST", True)
    assert list(adjusted) == list(trades)
    assert simulator.served.adjusted_daily_bars(
        "AAPL", trades[0].date, trades[-1].date, NOW
    ) == simulator.served.daily_bars("AAPL", trades[0].date, trades[-1].date, NOW)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"date": "2025-05-12", "amount": 0}, "dividend: amount takes a number > 0, not 0"),
        ({"date": "2025-05-12", "amount": "0.2"}, "dividend: amount takes a number > 0, not '0.2'"),
        ({"date": "12/05/2025", "amount": 0.2}, "dividend needs dates as 'YYYY-MM-DD', not '12/05/2025'"),
        ({"date": "2025-05-12"}, 'dividend takes {"date": ..., "amount": ...}'),
        (
            [{"date": "2025-05-12", "amount": 0.2}, {"date": "2025-05-12", "amount": 0.1}],
            "dividend: two on 2025-05-12; give one with their sum",
        ),
    ],
)
def test_a_malformed_dividend_is_refused_naming_its_form(value, message) -> None:
    with pytest.raises(UnknownFault, match="^Fault " + re.escape(message)):
        validate_settings({"dividend": value}, "AAPL")


def test_a_dividend_not_below_the_close_before_it_is_refused_when_served(start) -> None:
    simulator, _ = start({"AAPL": {"dividend": {"date": SECOND_EX.isoformat(), "amount": 100000}}})
    with pytest.raises(BadPropertyValue, match="dividend of 100000 on 2025-05-12 is not below AAPL's close"):
        simulator.served.dividend_factor("AAPL", FIRST_EX, NOW)
