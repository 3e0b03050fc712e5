"""Timeframes: IB's longest request per bar size, the session of an intraday bar, the configured policy."""

import datetime as dt

import pytest

from ibkr_market_data import calendars, daily_plan, timeframes
from ibkr_market_data.bars import Bar
from ibkr_market_data.errors import UnknownTimeframeError
from ibkr_market_data.repository import SymbolRow
from ibkr_market_data.timeframes import DAILY, FIVE_MINUTES, HOURLY, ONE_MINUTE

BHP = SymbolRow(2, "BHP", "SMART", "ASX", "AUD", "STK", 4036812, 1, True)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_an_intraday_bar_belongs_to_its_session_in_the_exchanges_zone():
    # BHP's first 1-minute bar of 2025-01-15 starts 10:00 Sydney, 23:00 UTC the day before.
    bar_start = dt.datetime(2025, 1, 14, 23, 0)
    assert timeframes.session_date(bar_start, "Australia/Sydney") == dt.date(2025, 1, 15)
    assert timeframes.session_date(bar_start, "America/New_York") == dt.date(2025, 1, 14)
    [target] = daily_plan.plan_daily(
        dt.date(2025, 1, 15), [BHP], daily_plan.StoredState(bars={}), NOW, 1, ONE_MINUTE
    ).targets
    bar = Bar(bar_start, *(1,) * 4, 10, None, 1)  # type: ignore[arg-type]
    assert target.session_of(bar) == dt.date(2025, 1, 15)
    assert target.time_zone == calendars.time_zone("ASX")
    assert list(target.expected_bars) == [360]


def test_one_request_spans_at_most_what_ib_accepts_per_bar_size():
    # IB's step sizes: 1 min up to 1 D, 5 mins up to 1 W, 1 hour up to 1 M, 1 day up to 1 Y.
    assert [tf.max_request_days for tf in (ONE_MINUTE, FIVE_MINUTES, HOURLY, DAILY)] == [1, 7, 28, 365]
    days = [dt.date(2025, 1, d) for d in (6, 7, 8, 9, 10, 13, 14, 15, 16, 17)]
    assert daily_plan.split_windows(days, 1) == [[day] for day in days]
    assert daily_plan.split_windows(days, 7) == [days[:5], days[5:]]  # 6..13 January is 8 days
    assert daily_plan.split_windows(days, 28) == [days]
    with pytest.raises(ValueError, match="exceed one request"):
        timeframes.request_duration(2, ONE_MINUTE)


def test_configured_timeframes_daily_for_all_intraday_for_high_priority():
    policy = timeframes.policy_from_env({})
    assert policy.for_priority(1) == [DAILY, HOURLY, FIVE_MINUTES, ONE_MINUTE]
    assert policy.for_priority(2) == [DAILY]
    only_five = timeframes.policy_from_env(
        {"IBKR_INTRADAY_TIMEFRAMES": "5min", "IBKR_INTRADAY_MAX_PRIORITY": "2"}
    )
    assert only_five.for_priority(2) == [DAILY, FIVE_MINUTES]
    assert timeframes.policy_from_env({"IBKR_INTRADAY_TIMEFRAMES": ""}).for_priority(1) == [DAILY]


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"IBKR_INTRADAY_TIMEFRAMES": "1min,2min"}, "IBKR_INTRADAY_TIMEFRAMES='1min,2min'"),
        ({"IBKR_INTRADAY_TIMEFRAMES": "1day"}, "list intraday timeframes only"),
        ({"IBKR_INTRADAY_MAX_PRIORITY": "high"}, "IBKR_INTRADAY_MAX_PRIORITY='high'"),
    ],
)
def test_a_bad_timeframe_setting_is_refused_naming_it(environ, named):
    with pytest.raises(UnknownTimeframeError, match=named):
        timeframes.policy_from_env(environ)
