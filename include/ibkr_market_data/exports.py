"""Export stored bars as Parquet files under ``timeframe=/symbol=/year=``, writing only files that changed.

Each file holds one symbol's bars of one period (a month of intraday bars, a year of daily bars)
and carries a fingerprint of the rows it was written from; docs/exports.md gives the layout, the
schema and how a re-run decides what to write.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ibkr_market_data import reader, repository
from ibkr_market_data.errors import ReadRequestError
from ibkr_market_data.repository import Listing, PeriodFingerprint
from ibkr_market_data.timeframes import Timeframe

if TYPE_CHECKING:
    import pandas as pd
    import psycopg
    import pyarrow as pa

log = logging.getLogger(__name__)

#: Version of the file layout and schema; a file written by another version is written again.
EXPORT_FORMAT = 1
#: The Parquet key-value metadata entry holding a file's manifest (JSON).
MANIFEST_KEY = b"ibkr_market_data.export"
#: Parquet compression: zstd, read by pyarrow, DuckDB, Spark and polars alike.
COMPRESSION = "zstd"


@dataclass(frozen=True)
class ExportFile:
    """One Parquet file of an export: one symbol's bars of one timeframe and one period of sessions."""

    listing: Listing
    timeframe: Timeframe
    #: The time zone that dates the symbol's sessions (``UTC`` for daily bars, stamped with their date).
    zone: str
    #: First and last day of the period (a calendar month of sessions, or a year of daily sessions).
    period_start: dt.date
    period_end: dt.date

    @property
    def label(self) -> str:
        """``2025-01`` for a month, ``2025`` for a year."""
        if self.timeframe.intraday:
            return f"{self.period_start:%Y-%m}"
        return f"{self.period_start:%Y}"

    @property
    def relative_path(self) -> Path:
        """``timeframe=1min/symbol=AAPL/year=2025/2025-01.parquet``, the symbol URI-escaped (Hive style)."""
        symbol = quote(self.listing.symbol, safe=" ")
        return (
            Path(f"timeframe={self.timeframe.name}")
            / f"symbol={symbol}"
            / f"year={self.period_start.year}"
            / f"{self.label}.parquet"
        )

    def manifest(self, fingerprint: PeriodFingerprint) -> dict[str, object]:
        """Return the manifest stored in the file: what it holds and the fingerprint of its rows."""
        return {
            "format": EXPORT_FORMAT,
            "symbol": self.listing.symbol,
            "exchange": self.listing.primary_exchange,
            "timeframe": self.timeframe.name,
            "period": self.label,
            "rows": fingerprint.rows,
            "content_hash": fingerprint.content_hash,
        }


@dataclass
class ExportSummary:
    """What one export did."""

    out: Path
    files_with_bars: int = 0
    files_written: int = 0
    files_unchanged: int = 0
    bars_written: int = 0

    def line(self) -> str:
        """Return the export's one-line summary for the terminal."""
        return (
            f"export to {self.out}: {self.files_written} files written ({self.bars_written:,} bars), "
            f"{self.files_unchanged} unchanged, of {self.files_with_bars} with bars in the range"
        )


# -- checking the output directory --------------------------------------------------------------


def check_output_dir(out: str | os.PathLike[str], name: str = "out") -> Path:
    """Return ``out`` as a directory that exists and can be written, creating it if needed.

    :param out: the directory to write into.
    :param name: what the caller calls it (``--out``, ``OUT``), for the message.
    :raises ReadRequestError: when it is empty, a file, or cannot be created or written.
    """
    if not str(out).strip():
        raise ReadRequestError(f"{name} is empty; give the directory to write the Parquet files into")
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ReadRequestError(f"{name} {path} is a file; give a directory (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Permissions are not the whole story (root, read-only mounts): try a write.
        with tempfile.TemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ReadRequestError(f"{name} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


# -- planning the files -----------------------------------------------------------------------------


def period_starts(timeframe: Timeframe, start: dt.date, end: dt.date) -> list[dt.date]:
    """Return the first day of every period (month for intraday, year for daily) meeting ``[start, end]``."""
    if timeframe.intraday:
        day, firsts = dt.date(start.year, start.month, 1), []
        while day <= end:
            firsts.append(day)
            day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
        return firsts
    return [dt.date(year, 1, 1) for year in range(start.year, end.year + 1)]


def period_end(timeframe: Timeframe, first: dt.date) -> dt.date:
    """Return the last day of the period that starts on ``first``."""
    if timeframe.intraday:
        return dt.date(first.year + first.month // 12, first.month % 12 + 1, 1) - dt.timedelta(days=1)
    return dt.date(first.year, 12, 31)


def plan_files(request: reader.ReadRequest) -> list[ExportFile]:
    """Return the files an export of ``request`` looks at: every listing's periods meeting its range.

    Each file holds its whole period, whatever part of it the range covers: a file's content
    depends only on what is stored, never on the range asked for.
    """
    files = []
    for window in reader.read_windows(request):
        for listing in window.listings:
            for first in period_starts(request.timeframe, request.start, request.end):
                files.append(
                    ExportFile(
                        listing, request.timeframe, window.zone, first, period_end(request.timeframe, first)
                    )
                )
    return files


# -- fingerprints -----------------------------------------------------------------------------------


def stored_fingerprints(
    conn: psycopg.Connection, files: Sequence[ExportFile]
) -> dict[ExportFile, PeriodFingerprint]:
    """Return the fingerprint of the stored rows of each of ``files`` that has any; one query per zone."""
    by_zone: dict[str, list[ExportFile]] = {}
    for export_file in files:
        by_zone.setdefault(export_file.zone, []).append(export_file)
    found: dict[ExportFile, PeriodFingerprint] = {}
    for zone, zone_files in by_zone.items():
        timeframe = zone_files[0].timeframe
        first = min(export_file.period_start for export_file in zone_files)
        after = max(export_file.period_end for export_file in zone_files) + dt.timedelta(days=1)
        fingerprints = repository.period_fingerprints(
            conn,
            sorted({export_file.listing.id for export_file in zone_files}),
            timeframe.name,
            "month" if timeframe.intraday else "year",
            zone,
            reader.local_midnight_utc(first, zone),
            reader.local_midnight_utc(after, zone),
        )
        for export_file in zone_files:
            fingerprint = fingerprints.get((export_file.listing.id, export_file.period_start))
            if fingerprint is not None:
                found[export_file] = fingerprint
    return found


def written_manifest(path: Path) -> dict[str, object] | None:
    """Return the manifest of the Parquet file at ``path``; None when missing, unreadable or without one."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    try:
        metadata = pq.read_schema(path).metadata or {}
        manifest = json.loads(metadata[MANIFEST_KEY])
    except (OSError, ValueError, KeyError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        log.warning("%s has no readable export manifest (%s): writing it again", path, exc)
        return None
    return manifest if isinstance(manifest, dict) else None


# -- writing ----------------------------------------------------------------------------------------


def parquet_schema() -> pa.Schema:
    """Return the schema of every export file (docs/exports.md); symbol, timeframe, year are in the path."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("session", pa.date32(), nullable=False),
            pa.field("open", pa.float64(), nullable=False),
            pa.field("high", pa.float64(), nullable=False),
            pa.field("low", pa.float64(), nullable=False),
            pa.field("close", pa.float64(), nullable=False),
            pa.field("volume", pa.int64(), nullable=False),
            pa.field("wap", pa.float64()),
            pa.field("bar_count", pa.int32()),
        ]
    )


def bars_table(bars: pd.DataFrame, manifest: dict[str, object]) -> pa.Table:
    """Return one symbol's ``bars`` (a ``reader.read_bars`` frame) as an Arrow table of ``parquet_schema``."""
    import pyarrow as pa

    flat = bars.reset_index(level="symbol", drop=True).reset_index()
    schema = parquet_schema().with_metadata({MANIFEST_KEY: json.dumps(manifest, sort_keys=True).encode()})
    return pa.Table.from_pandas(flat, preserve_index=False).select(schema.names).cast(schema)


def write_atomically(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a hidden file in the same directory, renamed over it when complete.

    A reader never sees half a file, and an interrupted export leaves the previous file in place.
    """
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    # A leading dot: Parquet dataset readers skip the file while it is being written.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        pq.write_table(table, temporary, compression=COMPRESSION)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def export_bars(
    out: str | os.PathLike[str],
    symbols: reader.Symbols,
    timeframe: str,
    start: reader.DateLike,
    end: reader.DateLike,
    *,
    conn: psycopg.Connection | None = None,
    progress: bool | None = None,
) -> ExportSummary:
    """Write the Parquet files of ``symbols``' bars for the periods meeting ``[start, end]`` that changed.

    A file is written when the stored rows of its period differ from the fingerprint in the file
    there (or there is none); otherwise it is left alone, so a re-run with nothing new writes nothing.

    :param out: the directory to write into; created if missing.
    :param symbols: a symbol name, several, or None for every symbol.
    :param timeframe: ``1day``, ``1hour``, ``5min`` or ``1min``.
    :param start: the first session date (a date or ``YYYY-MM-DD``); its period is exported whole.
    :param end: the last session date; its period is exported whole.
    :param conn: a psycopg 3 connection to the market-data database; default: one opened on the
        ``market_data_db`` Airflow connection and closed before returning.
    :param progress: a progress bar on stderr: None on a terminal only, True always, False never.
    :raises ReadRequestError: on an unknown symbol or timeframe, a bad range or an unusable ``out``.
    """
    from tqdm import tqdm

    reader.check_timeframe(timeframe)
    reader.check_range(start, end)
    directory = check_output_dir(out)
    summary = ExportSummary(directory)
    connection = conn if conn is not None else reader.open_connection()
    try:
        with connection.transaction():
            request = reader.resolve_request(connection, symbols, timeframe, start, end)
            fingerprints = stored_fingerprints(connection, plan_files(request))
        summary.files_with_bars = len(fingerprints)
        changed = []
        for export_file, fingerprint in fingerprints.items():
            manifest = export_file.manifest(fingerprint)
            if written_manifest(directory / export_file.relative_path) == manifest:
                summary.files_unchanged += 1
            else:
                changed.append((export_file, manifest))
        rows = sum(fingerprints[export_file].rows for export_file, _ in changed)
        with tqdm(
            total=rows,
            unit="bar",
            unit_scale=True,
            desc="export",
            disable=None if progress is None else not progress,
        ) as bar:
            for export_file, manifest in changed:
                bars = reader.read_bars(
                    export_file.listing.symbol,
                    timeframe,
                    export_file.period_start,
                    export_file.period_end,
                    conn=connection,
                )
                write_atomically(bars_table(bars, manifest), directory / export_file.relative_path)
                summary.files_written += 1
                summary.bars_written += len(bars)
                bar.update(len(bars))
    finally:
        if conn is None:
            connection.close()
    return summary
