"""The exports' pure parts: periods and file paths, the output directory check, manifests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ibkr_market_data import exports
from ibkr_market_data.errors import ReadRequestError
from ibkr_market_data.reader import ReadRequest
from ibkr_market_data.repository import Listing, PeriodFingerprint
from ibkr_market_data.timeframes import DAILY, ONE_MINUTE

AAPL = Listing(1, "AAPL", "NASDAQ", None)
BHP = Listing(2, "BHP", "ASX", None)


def test_intraday_files_hold_a_month_and_daily_files_a_year() -> None:
    assert exports.period_starts(ONE_MINUTE, dt.date(2024, 11, 30), dt.date(2025, 2, 1)) == [
        dt.date(2024, 11, 1),
        dt.date(2024, 12, 1),
        dt.date(2025, 1, 1),
        dt.date(2025, 2, 1),
    ]
    assert exports.period_end(ONE_MINUTE, dt.date(2024, 2, 1)) == dt.date(2024, 2, 29)
    assert exports.period_end(ONE_MINUTE, dt.date(2024, 12, 1)) == dt.date(2024, 12, 31)
    assert exports.period_starts(DAILY, dt.date(2024, 12, 31), dt.date(2025, 1, 2)) == [
        dt.date(2024, 1, 1),
        dt.date(2025, 1, 1),
    ]
    assert exports.period_end(DAILY, dt.date(2025, 1, 1)) == dt.date(2025, 12, 31)


def test_the_planned_files_cover_every_listing_and_period_with_its_zone() -> None:
    files = exports.plan_files(
        ReadRequest((AAPL, BHP), ONE_MINUTE, dt.date(2025, 1, 31), dt.date(2025, 2, 1))
    )
    assert [(f.listing.symbol, f.zone, f.label) for f in files] == [
        ("AAPL", "America/New_York", "2025-01"),
        ("AAPL", "America/New_York", "2025-02"),
        ("BHP", "Australia/Sydney", "2025-01"),
        ("BHP", "Australia/Sydney", "2025-02"),
    ]


@pytest.mark.parametrize(
    ("symbol", "timeframe", "path"),
    [
        ("AAPL", ONE_MINUTE, "timeframe=1min/symbol=AAPL/year=2025/2025-03.parquet"),
        ("BRK A", DAILY, "timeframe=1day/symbol=BRK A/year=2025/2025.parquet"),
        ("AB/C%", DAILY, "timeframe=1day/symbol=AB%2FC%25/year=2025/2025.parquet"),
    ],
)
def test_a_files_path_is_hive_style_with_the_symbol_escaped(symbol, timeframe, path) -> None:
    export_file = exports.ExportFile(
        Listing(1, symbol, "NYSE", None), timeframe, "UTC", dt.date(2025, 3, 1), dt.date(2025, 3, 31)
    )
    assert str(export_file.relative_path) == path


def test_the_output_directory_is_created_and_a_file_is_refused(tmp_path: Path) -> None:
    assert exports.check_output_dir(tmp_path / "a" / "b", "OUT") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir() and list((tmp_path / "a" / "b").iterdir()) == []  # no probe left
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReadRequestError, match=r"OUT .*/file is a file; give a directory"):
        exports.check_output_dir(tmp_path / "file", "OUT")
    with pytest.raises(ReadRequestError, match="OUT is empty"):
        exports.check_output_dir(" ", "OUT")


def test_a_missing_or_unreadable_file_has_no_manifest_and_a_written_one_reads_back(tmp_path: Path) -> None:
    assert exports.written_manifest(tmp_path / "none.parquet") is None
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    assert exports.written_manifest(tmp_path / "broken.parquet") is None

    import pandas as pd

    from ibkr_market_data import reader

    bars = reader.bars_frame(
        [(1, dt.datetime(2025, 1, 15), 1.0, 2.0, 0.5, 1.5, 10, None, None)],
        {1: "AAPL"},
        "UTC",
        intraday=False,
    )
    export_file = exports.ExportFile(AAPL, DAILY, "UTC", dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    manifest = export_file.manifest(PeriodFingerprint(1, "12345"))
    exports.write_atomically(exports.bars_table(bars, manifest), tmp_path / "ok.parquet")

    assert exports.written_manifest(tmp_path / "ok.parquet") == manifest
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "broken.parquet",
        "ok.parquet",
    ]  # no temporary
    table = pq.read_table(tmp_path / "ok.parquet")
    assert table.schema.equals(exports.parquet_schema())
    assert table.to_pylist()[0]["timestamp"] == pd.Timestamp("2025-01-15", tz="UTC").to_pydatetime()
