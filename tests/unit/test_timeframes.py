"""Timeframes: IB's longest request per bar size, bars per session by the schedule, which symbols get which."""

import datetime as dt

import pytest

from ibkr_market_data import calendars, daily_plan, timeframes
from ibkr_market_data.bars import Bar
from ibkr_market_data.errors import InvalidRunParamError, UnknownTimeframeError
from ibkr_market_data.repository import SymbolRow
from ibkr_market_data.tasks.params import selected_timeframe, timeframes_of
from ibkr_market_data.timeframes import DAILY, FIVE_MINUTES, HOURLY, ONE_MINUTE

AAPL = SymbolRow(1, "AAPL", "SMART", "NASDAQ", "USD", "STK", 265598, 1, True)
BHP = SymbolRow(2, "BHP", "SMART", "ASX", "AUD", "STK", 4036812, 1, True)
GGP = SymbolRow(3, "GGP", "SMART", "ASX", "AUD", "STK", 4036999, 2, True)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def scheduled(exchange, day, tf):
    return daily_plan.scheduled_bars(exchange, day, tf)


def test_bars_per_session_follow_the_schedule_early_closes_included():
    full_day, black_friday = dt.date(2025, 11, 26), dt.date(2025, 11, 28)  # 13:00 close in New York
    assert [scheduled("NASDAQ", full_day, tf) for tf in (ONE_MINUTE, FIVE_MINUTES, HOURLY, DAILY)] == [
        390,
        78,
        7,
        1,
    ]
    assert [scheduled("NASDAQ", black_friday, tf) for tf in (ONE_MINUTE, FIVE_MINUTES, HOURLY)] == [
        210,
        42,
        4,
    ]
    # ASX: 10:00-16:00 Sydney, on the hour.
    assert [scheduled("ASX", full_day, tf) for tf in (ONE_MINUTE, FIVE_MINUTES, HOURLY)] == [360, 72, 6]


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


def test_intraday_plan_asks_only_for_sessions_not_complete_one_request_per_span():
    day = dt.date(2025, 1, 17)
    window = daily_plan.lookback_sessions("NASDAQ", day, 5, NOW)  # 13..17 January
    complete = {AAPL.id: {window[0], window[2], window[4]}}
    one_minute = daily_plan.plan_daily(day, [AAPL], daily_plan.StoredState(bars=complete), NOW, 5, ONE_MINUTE)
    assert [(t.first_session_date, t.session_date, t.duration) for t in one_minute.targets] == [
        (window[1], window[1], "1 D"),
        (window[3], window[3], "1 D"),
    ]
    assert {t.bar_size for t in one_minute.targets} == {"1 min"}
    # Five-minute bars: one request from the first incomplete session to the last, the complete one between included.
    [five] = daily_plan.plan_daily(
        day, [AAPL], daily_plan.StoredState(bars=complete), NOW, 5, FIVE_MINUTES
    ).targets
    assert (five.first_session_date, five.session_date, five.duration) == (window[1], window[3], "3 D")
    assert list(five.sessions) == [d.isoformat() for d in window[1:4]]
    assert list(five.expected_bars) == [78, 78, 78]
    # Every session complete: nothing is sent.
    done = daily_plan.plan_daily(
        day, [AAPL], daily_plan.StoredState(bars={AAPL.id: set(window)}), NOW, 5, ONE_MINUTE
    )
    assert done.targets == [] and [s.reason for s in done.skips] == [daily_plan.ALREADY_COLLECTED]


def test_a_session_is_complete_with_all_the_bars_of_its_schedule():
    day = dt.date(2025, 11, 28)
    counts = {AAPL.id: {day: 210, dt.date(2025, 11, 26): 389}}
    assert daily_plan.complete_sessions([AAPL], ONE_MINUTE, counts) == {AAPL.id: {day}}


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


def test_the_timeframe_param_picks_one_timeframe_for_every_selected_symbol(monkeypatch):
    monkeypatch.delenv("IBKR_INTRADAY_MAX_PRIORITY", raising=False)
    assert selected_timeframe({"timeframe": "5min"}) == FIVE_MINUTES
    assert timeframes_of([AAPL, GGP], FIVE_MINUTES) == {FIVE_MINUTES: [AAPL, GGP]}
    assert selected_timeframe({}) is None
    assert timeframes_of([AAPL, GGP], None) == {
        DAILY: [AAPL, GGP],
        HOURLY: [AAPL],
        FIVE_MINUTES: [AAPL],
        ONE_MINUTE: [AAPL],
    }
    with pytest.raises(InvalidRunParamError, match="Param 'timeframe': unknown timeframe '2min'"):
        selected_timeframe({"timeframe": "2min"})


def test_a_bad_timeframe_setting_fails_a_configured_run_naming_the_variable(monkeypatch):
    monkeypatch.setenv("IBKR_INTRADAY_TIMEFRAMES", "1min,10min")
    with pytest.raises(
        InvalidRunParamError, match=r"^IBKR_INTRADAY_TIMEFRAMES='1min,10min': unknown timeframe"
    ):
        selected_timeframe({"timeframe": "configured"})
    assert selected_timeframe({"timeframe": "1min"}) == ONE_MINUTE  # one timeframe reads no setting
