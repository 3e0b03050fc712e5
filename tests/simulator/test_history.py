"""Request semantics: endDateTime forms, duration units and IB's validation errors."""

from __future__ import annotations

import datetime as dt

import pytest

from tws_simulator.history import InvalidRequest, build_query, parse_end_date_time, window_start

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
