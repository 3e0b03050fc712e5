"""The daily plan: which symbols to request for a trading date, over which sessions, and why not the rest."""

import datetime as dt

import pytest

from ibkr_market_data.daily_plan import (
    ALREADY_COLLECTED,
    StoredState,
    complete_sessions,
    lookback_sessions,
    lookback_start,
    plan_daily,
    scheduled_bars,
)
from ibkr_market_data.repository import SymbolRow
from ibkr_market_data.timeframes import DAILY, FIVE_MINUTES, HOURLY, ONE_MINUTE

AAPL = SymbolRow(1, "AAPL", "SMART", "NASDAQ", "USD", "STK", 265598, 1, True)
BHP = SymbolRow(2, "BHP", "ASX", "ASX", "AUD", "STK", 4036812, 1, True)
CBA = SymbolRow(3, "CBA", "ASX", "ASX", "AUD", "STK", 4036818, 1, True)
#: Listed on ASX, but IB names a primary exchange we have no calendar for.
ON_CHIXAU = SymbolRow(4, "XRO", "ASX", "CHIXAU", "AUD", "STK", 700000002, 2, True)

DAY = dt.date(2025, 1, 15)
NOW = dt.datetime(2025, 1, 16, 12, tzinfo=dt.UTC)
#: Long after every intraday session the tests plan, so all of them have closed.
INTRADAY_NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: NASDAQ's five sessions up to 2025-01-15: it closed on 2025-01-09, a national day of mourning.
US_WEEK = [dt.date(2025, 1, d) for d in (8, 10, 13, 14, 15)]


def stored(**bars: list[dt.date]) -> StoredState:
    ids = {"AAPL": AAPL.id, "BHP": BHP.id, "CBA": CBA.id}
    return StoredState(bars={ids[name]: days for name, days in bars.items()})


def scheduled(exchange, day, tf):
    return scheduled_bars(exchange, day, tf)


def test_a_symbol_on_an_exchange_without_a_calendar_is_skipped_and_the_others_are_planned():
    plan = plan_daily(DAY, [AAPL, ON_CHIXAU, BHP, CBA], stored(CBA=[DAY]), now=NOW)

    assert [target.symbol for target in plan.targets] == ["AAPL", "BHP"]
    assert [(skip.symbol, skip.reason) for skip in plan.skips] == [
        ("XRO", "No trading calendar for exchange 'CHIXAU'; known: AMEX, ARCA, ASX, BATS, NASDAQ, NYSE"),
        ("CBA", ALREADY_COLLECTED),
    ]
    # A lookback of one session is the date alone.
    assert [(t.first_session_date, t.session_date, t.duration) for t in plan.targets] == [
        (DAY, DAY, "1 D")
    ] * 2


def test_a_holiday_and_an_open_session_are_skipped_with_their_exchange():
    mlk_day = dt.date(2025, 1, 20)
    plan = plan_daily(mlk_day, [AAPL, BHP], stored(), now=dt.datetime(2025, 1, 20, 3, tzinfo=dt.UTC))

    assert plan.targets == []
    assert [(skip.symbol, skip.reason) for skip in plan.skips] == [
        ("AAPL", "not a trading day on NASDAQ"),
        ("BHP", "session not closed yet on ASX"),
    ]


def test_the_lookback_window_is_the_exchange_s_last_closed_sessions_up_to_the_date():
    assert lookback_sessions("NASDAQ", DAY, 5, NOW) == US_WEEK
    # MLK day is no NASDAQ session; Australia Day's Monday holiday (2025-01-27) is no ASX session.
    assert lookback_sessions("NASDAQ", dt.date(2025, 1, 21), 2, NOW.replace(day=22)) == [
        dt.date(2025, 1, 17),
        dt.date(2025, 1, 21),
    ]
    assert lookback_sessions("ASX", dt.date(2025, 1, 28), 2, NOW.replace(day=29)) == [
        dt.date(2025, 1, 24),
        dt.date(2025, 1, 28),
    ]
    # A session that has not closed yet is not in the window; it still counts as the date's slot.
    assert lookback_sessions("NASDAQ", DAY, 3, dt.datetime(2025, 1, 15, 18, tzinfo=dt.UTC)) == US_WEEK[2:4]
    # A date the exchange does not trade is a slot too: a lookback of 1 on a holiday is empty.
    assert lookback_sessions("NASDAQ", dt.date(2025, 1, 20), 1, NOW.replace(day=21)) == []
    assert lookback_start(DAY, 30) <= lookback_sessions("ASX", DAY, 30, NOW)[0]


def test_a_missing_earlier_session_is_healed_in_the_one_request_that_refetches_the_window():
    # 2025-01-13 was lost (a down scheduler): today's run asks the whole window again.
    plan = plan_daily(DAY, [AAPL], stored(AAPL=[d for d in US_WEEK[:-1] if d.day != 13]), NOW, lookback=5)

    (target,) = plan.targets
    assert (target.first_session_date, target.session_date) == (US_WEEK[0], DAY)
    assert target.duration == "8 D"
    # The target names its sessions, so collecting needs no exchange calendar to judge them.
    assert target.sessions == tuple(day.isoformat() for day in US_WEEK)
    assert target.end_date_time == "20250115 23:59:59 America/New_York"


def test_a_window_with_nothing_missing_sends_nothing_even_when_an_earlier_session_is_missing_elsewhere():
    plan = plan_daily(DAY, [AAPL, BHP], stored(AAPL=US_WEEK, BHP=[DAY]), NOW, lookback=5)

    # AAPL has all five; BHP has only the date itself, so its four earlier sessions are healed.
    assert [(skip.symbol, skip.reason) for skip in plan.skips] == [("AAPL", ALREADY_COLLECTED)]
    (target,) = plan.targets
    assert target.symbol == "BHP"
    assert target.first_session_date == dt.date(2025, 1, 9)  # ASX traded that day


def test_a_date_that_is_no_session_of_the_symbol_s_exchange_still_heals_its_last_sessions():
    australia_day = dt.date(2025, 1, 27)  # US trades, ASX does not
    friday = dt.date(2025, 1, 24)
    plan = plan_daily(
        australia_day, [BHP], stored(BHP=[dt.date(2025, 1, 23)]), NOW.replace(day=28), lookback=2
    )

    # The holiday is one of the two slots: only Friday is looked at, and it is missing.
    (target,) = plan.targets
    assert (target.first_session_date, target.session_date) == (friday, friday)
    healed = plan_daily(australia_day, [BHP], stored(BHP=[friday]), NOW.replace(day=28), lookback=2)
    assert [skip.reason for skip in healed.skips] == ["not a trading day on ASX"]


def test_sessions_known_empty_and_before_the_first_available_date_are_never_missing():
    state = StoredState(
        bars={AAPL.id: [DAY]},
        no_data={AAPL.id: [dt.date(2025, 1, 13)]},
        first_available={AAPL.id: dt.date(2025, 1, 14), BHP.id: dt.date(2025, 2, 3)},
    )
    plan = plan_daily(DAY, [AAPL, BHP], state, NOW, lookback=5)

    # AAPL: 01-14 is still missing, so the window starts at its first available date.
    (target,) = plan.targets
    assert (target.symbol, target.first_session_date) == ("AAPL", dt.date(2025, 1, 14))
    # BHP is not listed yet: not asked at all.
    assert [(skip.symbol, skip.reason) for skip in plan.skips] == [
        ("BHP", "not listed yet: IB has data from 2025-02-03 (head timestamp)")
    ]


def test_a_lookback_below_one_session_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        plan_daily(DAY, [AAPL], stored(), NOW, lookback=0)


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


def test_intraday_plan_asks_only_for_sessions_not_complete_one_request_per_span():
    day = dt.date(2025, 1, 17)
    window = lookback_sessions("NASDAQ", day, 5, INTRADAY_NOW)  # 13..17 January
    complete = {AAPL.id: {window[0], window[2], window[4]}}
    one_minute = plan_daily(day, [AAPL], StoredState(bars=complete), INTRADAY_NOW, 5, ONE_MINUTE)
    assert [(t.first_session_date, t.session_date, t.duration) for t in one_minute.targets] == [
        (window[1], window[1], "1 D"),
        (window[3], window[3], "1 D"),
    ]
    assert {t.bar_size for t in one_minute.targets} == {"1 min"}
    # Five-minute bars: one request from the first incomplete session to the last, the complete one
    # between included.
    [five] = plan_daily(day, [AAPL], StoredState(bars=complete), INTRADAY_NOW, 5, FIVE_MINUTES).targets
    assert (five.first_session_date, five.session_date, five.duration) == (window[1], window[3], "3 D")
    assert list(five.sessions) == [d.isoformat() for d in window[1:4]]
    assert list(five.expected_bars) == [78, 78, 78]
    # The newest session's close travels with the target: a collect task needs no calendar for it.
    assert five.session_close == "2025-01-16T21:00:00+00:00"
    assert five.newest_close == dt.datetime(2025, 1, 16, 21, 0)
    # Every session complete: nothing is sent.
    done = plan_daily(day, [AAPL], StoredState(bars={AAPL.id: set(window)}), INTRADAY_NOW, 5, ONE_MINUTE)
    assert done.targets == [] and [s.reason for s in done.skips] == [ALREADY_COLLECTED]


def test_a_session_is_complete_with_all_the_bars_of_its_schedule():
    day = dt.date(2025, 11, 28)
    counts = {AAPL.id: {day: 210, dt.date(2025, 11, 26): 389}}
    assert complete_sessions([AAPL], ONE_MINUTE, counts) == {AAPL.id: {day}}


def test_a_symbol_outside_its_universe_membership_is_skipped_with_its_periods():
    from ibkr_market_data.daily_plan import OUTSIDE_MEMBERSHIP
    from ibkr_market_data.universe import Membership

    state = StoredState(
        bars={}, memberships={AAPL.id: [Membership("nasdaq100", dt.date(2025, 3, 24), None)], BHP.id: []}
    )
    plan = plan_daily(DAY, [AAPL, BHP], state, NOW, lookback=1)
    assert [target.symbol for target in plan.targets] == ["BHP"]
    [skip] = plan.skips
    assert (skip.symbol, skip.reason) == ("AAPL", f"{OUTSIDE_MEMBERSHIP} (2025-03-24..)")
    inside = StoredState(bars={}, memberships={AAPL.id: [Membership("nasdaq100", None, DAY)]})
    assert [target.symbol for target in plan_daily(DAY, [AAPL], inside, NOW, lookback=1).targets] == ["AAPL"]
