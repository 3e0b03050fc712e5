"""The read API's pure parts: request checks, time windows, the bars frame and the coverage statuses."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from ibkr_market_data import reader
from ibkr_market_data.errors import ReadRequestError, UnknownCorporateActionKindError
from ibkr_market_data.reader import CoverageStatus, ReadRequest
from ibkr_market_data.repository import Listing
from ibkr_market_data.timeframes import DAILY, FIVE_MINUTES

AAPL = Listing(1, "AAPL", "NASDAQ", None)
BHP = Listing(2, "BHP", "ASX", None)
MSFT = Listing(3, "MSFT", "NASDAQ", None)


@pytest.mark.parametrize(
    ("start", "end", "named"),
    [
        ("2025-01-17", "2025-01-13", "start (2025-01-17) is after end (2025-01-13)"),
        ("2025-13-01", "2025-01-13", "start must be a date as YYYY-MM-DD, not '2025-13-01'"),
        (dt.datetime(2025, 1, 13, 9), "2025-01-13", "start is a datetime"),
        ("2025-01-13", 20250113, "end must be a date as YYYY-MM-DD, not 20250113"),
    ],
)
def test_a_bad_range_is_refused_naming_the_bound(start, end, named) -> None:
    with pytest.raises(ReadRequestError, match=named.replace("(", r"\(").replace(")", r"\)")):
        reader.check_range(start, end)


def test_a_range_may_be_dates_or_iso_strings_and_one_day() -> None:
    assert reader.check_range("2025-01-13", dt.date(2025, 1, 13)) == (
        dt.date(2025, 1, 13),
        dt.date(2025, 1, 13),
    )


def test_an_unknown_timeframe_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(
        ReadRequestError, match="unknown timeframe '2min'; choose from 1day, 1hour, 5min, 1min"
    ):
        reader.check_timeframe("2min")
    assert reader.check_timeframe("5MIN") is FIVE_MINUTES


def test_symbol_names_take_one_name_several_or_none() -> None:
    assert reader.symbol_names("BRK A") == ["BRK A"]  # a string is one name, not its letters
    assert reader.symbol_names(["AAPL", " MSFT ", "AAPL"]) == ["AAPL", "MSFT"]
    assert reader.symbol_names(None) is None
    with pytest.raises(ReadRequestError, match="symbols is empty"):
        reader.symbol_names([])
    with pytest.raises(ReadRequestError, match="non-empty names"):
        reader.symbol_names(["AAPL", ""])


def test_adjusted_reads_account_for_what_ibkr_adjust_for_names(monkeypatch) -> None:
    assert reader.adjustment_kinds(False) is None
    monkeypatch.delenv("IBKR_ADJUST_FOR", raising=False)
    assert reader.adjustment_kinds(True) == ("split", "dividend")
    monkeypatch.setenv("IBKR_ADJUST_FOR", "split")
    assert reader.adjustment_kinds(True) == ("split",)
    monkeypatch.setenv("IBKR_ADJUST_FOR", "bonus")
    with pytest.raises(UnknownCorporateActionKindError, match="unknown corporate-action kind 'bonus'"):
        reader.adjustment_kinds(True)


def test_daily_bars_share_one_window_of_session_dates() -> None:
    request = ReadRequest((AAPL, BHP), DAILY, dt.date(2025, 1, 13), dt.date(2025, 1, 17))
    [window] = reader.read_windows(request)
    assert (window.zone, window.listings) == ("UTC", (AAPL, BHP))
    assert (window.first, window.stop) == (dt.datetime(2025, 1, 13), dt.datetime(2025, 1, 18))


def test_intraday_windows_run_from_local_midnight_to_local_midnight_per_time_zone() -> None:
    request = ReadRequest((AAPL, BHP, MSFT), FIVE_MINUTES, dt.date(2025, 1, 13), dt.date(2025, 1, 17))
    new_york, sydney = reader.read_windows(request)  # by zone name
    # Sydney is UTC+11 in January: its session of the 13th starts on the 12th in UTC.
    assert (sydney.zone, sydney.listings) == ("Australia/Sydney", (BHP,))
    assert (sydney.first, sydney.stop) == (dt.datetime(2025, 1, 12, 13), dt.datetime(2025, 1, 17, 13))
    assert (new_york.zone, new_york.listings) == ("America/New_York", (AAPL, MSFT))
    assert (new_york.first, new_york.stop) == (dt.datetime(2025, 1, 13, 5), dt.datetime(2025, 1, 18, 5))


def test_an_intraday_read_of_an_exchange_without_a_calendar_is_refused() -> None:
    request = ReadRequest(
        (Listing(9, "VOD", "LSE", None),), FIVE_MINUTES, dt.date(2025, 1, 13), dt.date(2025, 1, 13)
    )
    with pytest.raises(ReadRequestError, match="VOD: No trading calendar for exchange 'LSE'"):
        reader.read_windows(request)


def _row(symbol_id, timestamp, wap=100.2, bar_count=7):
    return (symbol_id, timestamp, 100.0, 101.0, 99.0, 100.5, 1000, wap, bar_count)


def test_an_intraday_bar_is_dated_by_its_session_in_the_exchanges_zone() -> None:
    rows = [_row(2, dt.datetime(2025, 1, 14, 23, 0)), _row(2, dt.datetime(2025, 1, 15, 4, 55))]
    frame = reader.bars_frame(rows, {2: "BHP"}, "Australia/Sydney", intraday=True)
    assert list(frame["session"]) == [dt.date(2025, 1, 15), dt.date(2025, 1, 15)]
    assert list(frame.index) == [
        ("BHP", pd.Timestamp("2025-01-14 23:00", tz="UTC")),
        ("BHP", pd.Timestamp("2025-01-15 04:55", tz="UTC")),
    ]


def test_a_daily_bar_is_dated_by_its_timestamps_date_whatever_the_zone() -> None:
    frame = reader.bars_frame([_row(2, dt.datetime(2025, 1, 15))], {2: "BHP"}, "UTC", intraday=False)
    assert list(frame["session"]) == [dt.date(2025, 1, 15)]


def test_the_bars_frame_has_the_same_columns_and_types_empty_or_with_missing_values() -> None:
    full = reader.bars_frame([_row(1, dt.datetime(2025, 1, 15))], {1: "AAPL"}, "UTC", intraday=False)
    gaps = reader.bars_frame(
        [_row(1, dt.datetime(2025, 1, 15), None, None)], {1: "AAPL"}, "UTC", intraday=False
    )
    empty = reader.bars_frame([], {}, "UTC", intraday=False)
    assert tuple(full.columns) == reader.BAR_FRAME_COLUMNS
    for frame in (gaps, empty):
        assert frame.dtypes.to_dict() == full.dtypes.to_dict()
        assert frame.index.dtypes.to_dict() == full.index.dtypes.to_dict()
    assert str(full.index.dtypes["timestamp"]) == "datetime64[us, UTC]"
    assert pd.isna(gaps["wap"].iloc[0]) and pd.isna(gaps["bar_count"].iloc[0])


@pytest.mark.parametrize(
    ("bars", "expected", "before_first_date", "outcome", "status"),
    [
        (1, 1, False, None, CoverageStatus.COMPLETE),
        (78, 78, False, "failed", CoverageStatus.COMPLETE),  # stored since the failure
        (40, 78, False, "failed", CoverageStatus.PARTIAL),
        (0, 1, False, "no_data", CoverageStatus.NO_DATA),
        (0, 1, True, None, CoverageStatus.NO_DATA),
        (0, 1, True, "failed", CoverageStatus.NO_DATA),  # IB has nothing before its first date
        (0, 1, False, "failed", CoverageStatus.FAILED),
        (0, 1, False, None, CoverageStatus.NOT_COLLECTED),
    ],
)
def test_a_sessions_status_lets_stored_bars_win_then_no_data_then_failure(
    bars, expected, before_first_date, outcome, status
) -> None:
    assert reader.session_status(bars, expected, before_first_date, outcome) is status


def test_collected_means_complete_or_known_to_have_no_data() -> None:
    assert reader.COLLECTED_STATUSES == {CoverageStatus.COMPLETE, CoverageStatus.NO_DATA}
