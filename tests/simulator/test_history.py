"""Request semantics: endDateTime forms, duration units and IB's validation errors."""

from __future__ import annotations

import datetime as dt

import pytest

from tws_simulator.history import (
    LONGEST_INTRADAY_DURATIONS,
    InvalidRequest,
    build_query,
    check_duration,
    parse_end_date_time,
    window_start,
)

NOW = dt.datetime(2025, 6, 30, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", NOW),
        ("20250115 23:59:59 Australia/Sydney", dt.datetime(2025, 1, 15, 12, 59, 59, tzinfo=dt.UTC)),
        ("20250115 23:59:59 US/Eastern", dt.datetime(2025, 1, 16, 4, 59, 59, tzinfo=dt.UTC)),
        ("20250115 23:59:59 UTC", dt.datetime(2025, 1, 15, 23, 59, 59, tzinfo=dt.UTC)),
        ("20250115-23:59:59", dt.datetime(2025, 1, 15, 23, 59, 59, tzinfo=dt.UTC)),
        ("20250115 10:00:00", dt.datetime(2025, 1, 15, 10, 0, tzinfo=dt.UTC)),
        ("20250115", dt.datetime(2025, 1, 15, 23, 59, 59, tzinfo=dt.UTC)),
    ],
)
def test_end_date_time_forms(text: str, expected: dt.datetime) -> None:
    assert parse_end_date_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["2025-01-15", "20250115 25:00:00 UTC", "20250115 10:00:00 Mars/Olympus"])
def test_malformed_end_date_time_is_error_321(text: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_end_date_time(text, NOW)
    assert raised.value.error.code == 321


@pytest.mark.parametrize(
    ("duration", "start"),
    [
        ("3600 S", dt.datetime(2025, 3, 31, 11, tzinfo=dt.UTC)),
        ("2 D", dt.datetime(2025, 3, 29, 12, tzinfo=dt.UTC)),
        ("1 W", dt.datetime(2025, 3, 24, 12, tzinfo=dt.UTC)),
        ("1 M", dt.datetime(2025, 2, 28, 12, tzinfo=dt.UTC)),  # 31 March -> 28 February
        ("2 Y", dt.datetime(2023, 3, 31, 12, tzinfo=dt.UTC)),
    ],
)
def test_duration_units_are_calendar_spans(duration: str, start: dt.datetime) -> None:
    assert window_start(dt.datetime(2025, 3, 31, 12, tzinfo=dt.UTC), duration) == start


@pytest.mark.parametrize(
    ("duration", "cause"),
    [
        ("366 D", "durations longer than 365 days must be made in years"),
        ("86401 S", "durations longer than 86400 seconds must be made in days"),
        ("3 X", "Invalid duration"),
        ("D 3", "Invalid duration"),
    ],
)
def test_invalid_durations_are_error_321(duration: str, cause: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        window_start(NOW, duration)
    assert raised.value.error.code == 321 and cause in raised.value.error.message


def test_unknown_bar_size_and_what_to_show_are_error_321() -> None:
    common = {"end_date_time": "", "duration": "1 D", "use_rth": True, "format_date": 1, "now": NOW}
    with pytest.raises(InvalidRequest, match="bar size"):
        build_query(bar_size="7 mins", what_to_show="TRADES", **common)
    with pytest.raises(InvalidRequest, match="what to show"):
        build_query(bar_size="1 day", what_to_show="SENTIMENT", **common)
    assert build_query(bar_size="30 secs", what_to_show="MIDPOINT", **common).bar_seconds == 30


def test_longest_intraday_durations_follow_ibs_step_sizes() -> None:
    assert LONGEST_INTRADAY_DURATIONS == {
        1: "1800 S",
        5: "3600 S",
        10: "14400 S",
        15: "14400 S",
        30: "28800 S",
        60: "1 D",
        120: "2 D",
        180: "1 W",
        300: "1 W",
        600: "1 W",
        900: "1 W",
        1200: "1 W",
        1800: "1 M",
        3600: "1 M",
    }


@pytest.mark.parametrize(
    ("bar_size", "duration", "allowed"),
    [
        ("1 hour", "1 M", True),  # 31 March back to 28 February: 31 days
        ("1 hour", "31 D", True),
        ("1 hour", "32 D", False),
        ("1 min", "86400 S", True),
        ("1 min", "2 D", False),
        ("1 secs", "1800 S", True),
        ("1 secs", "1801 S", False),
        ("1 day", "20 Y", True),
    ],
)
def test_durations_are_compared_with_the_longest_as_spans(
    bar_size: str, duration: str, allowed: bool
) -> None:
    query = build_query(
        end_date_time="20250331 12:00:00 UTC",
        duration=duration,
        bar_size=bar_size,
        use_rth=True,
        what_to_show="TRADES",
        format_date=1,
        now=NOW,
    )
    if allowed:
        check_duration(query)
        return
    with pytest.raises(InvalidRequest) as raised:
        check_duration(query)
    assert raised.value.error.code == 162 and raised.value.error.message.endswith("Time length exceed max.")
