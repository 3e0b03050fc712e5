"""The daily bench's steady-state figures: what a plan asked beyond the template, requests per symbol-day."""

import datetime as dt

from bench.steady_state import intraday_requests_per_symbol_day, steady_state

DAY = dt.date(2025, 6, 27)
BEFORE = dt.date(2025, 6, 26)
PREFILLED = {("AAPL", "1day", BEFORE), ("AAPL", "1min", BEFORE), ("AAPL", "5min", BEFORE)}


def test_a_plan_asking_the_date_and_stored_sessions_only_is_a_steady_state():
    planned = {("AAPL", "1day", BEFORE), ("AAPL", "1day", DAY), ("AAPL", "1min", DAY), ("AAPL", "5min", DAY)}
    steady = steady_state(planned, PREFILLED, DAY)
    assert steady.ok
    assert (steady.new_keys, steady.symbol_timeframes) == (3, 3)


def test_a_plan_asking_an_earlier_session_the_template_lacks_is_not():
    planned = {("AAPL", "1min", DAY), ("AAPL", "1hour", BEFORE), ("AAPL", "1hour", DAY)}
    steady = steady_state(planned, PREFILLED, DAY)
    assert not steady.ok and steady.earlier_sessions_planned == 1
    assert steady.examples == ["AAPL 1hour 2025-06-26: planned, not in the template"]


def test_intraday_requests_are_counted_per_symbol_session_collected_whatever_its_timeframes():
    planned = {
        ("AAPL", "1day", DAY),
        ("AAPL", "1min", DAY),
        ("AAPL", "5min", DAY),
        ("MSFT", "1min", DAY),
        ("AAPL", "1min", BEFORE),  # stored already: not collected by this run
    }
    requests = {"1 day": 2, "1 min": 2, "5 mins": 1}
    figures = intraday_requests_per_symbol_day(requests, planned, PREFILLED)
    assert figures == {
        "symbol_days": 2,
        "requests": 3,
        "per_symbol_day": 1.5,
        "by_bar_size": {"1 min": 1.0, "5 mins": 0.5},
    }
