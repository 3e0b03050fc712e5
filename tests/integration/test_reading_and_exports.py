"""The read API and the Parquet exports against real PostgreSQL: the stored bars, coverage, re-runs."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest

from ibkr_market_data import exports, reader, repository
from ibkr_market_data.bars import Bar
from ibkr_market_data.errors import ReadRequestError
from ibkr_market_data.repository import AttemptStatus, RunContext
from ibkr_market_data.universe import load_universe
from ibkr_market_data_dev import local_cli, local_env

RUN = RunContext(dag_id="backfill_market_data", run_id="manual__reads", try_number=1)
#: Three NASDAQ / NYSE sessions and the ASX ones of the same dates (the 20th: US holiday, ASX trades).
SESSIONS = [dt.date(2025, 1, 15), dt.date(2025, 1, 16), dt.date(2025, 1, 17)]
ZONES = {"AAPL": "America/New_York", "BHP": "Australia/Sydney", "BRK A": "America/New_York"}


def price(value: str) -> Decimal:
    return Decimal(value)


def daily_bar(day: dt.date, close: str = "100.5", **values: object) -> Bar:
    fields: dict[str, object] = {
        "timestamp": dt.datetime.combine(day, dt.time()),
        "open": price("100"),
        "high": price("101.12345678"),
        "low": price("0.0005"),
        "close": price(close),
        "volume": 3_000_000_000,
        "wap": price("100.2"),
        "bar_count": 7,
    }
    fields.update(values)
    return Bar(**fields)  # type: ignore[arg-type]


def five_minute_bars(first: dt.datetime, count: int, close: str = "50.25") -> list[Bar]:
    return [
        Bar(
            timestamp=first + dt.timedelta(minutes=5 * i),
            open=price("50"),
            high=price("51"),
            low=price("49"),
            close=price(close),
            volume=100 + i,
            wap=None if i == 1 else price("50.1"),
            bar_count=9,
        )
        for i in range(count)
    ]


@pytest.fixture
def symbol_ids(db_conn: psycopg.Connection) -> dict[str, int]:
    universe = [entry for entry in load_universe() if entry.symbol in ZONES]
    repository.upsert_universe(db_conn, universe)
    db_conn.execute("UPDATE symbols SET active = TRUE, con_id = id")
    db_conn.commit()
    return {row.symbol: row.id for row in repository.select_symbols(db_conn)}


#: 5-minute bars around the edges of the sessions 15 to 17 January: (symbol, UTC start, in the range).
#: New York is UTC-5 in January, Sydney UTC+11; a bar's session is its start's local date.
EDGE_BARS = [
    ("AAPL", dt.datetime(2025, 1, 15, 4, 55), False),  # 23:55 on the 14th in New York
    ("AAPL", dt.datetime(2025, 1, 15, 5, 0), True),  # midnight starting the 15th
    ("AAPL", dt.datetime(2025, 1, 18, 4, 55), True),  # 23:55 on the 17th
    ("AAPL", dt.datetime(2025, 1, 18, 5, 0), False),  # midnight starting the 18th
    ("BHP", dt.datetime(2025, 1, 14, 12, 55), False),  # 23:55 on the 14th in Sydney
    ("BHP", dt.datetime(2025, 1, 14, 13, 0), True),
    ("BHP", dt.datetime(2025, 1, 17, 12, 55), True),
    ("BHP", dt.datetime(2025, 1, 17, 13, 0), False),
]


@pytest.fixture
def stored(db_conn: psycopg.Connection, symbol_ids: dict[str, int]) -> dict[str, int]:
    """Store daily bars of the three sessions and one on each side, and 5-minute bars.

    The 5-minute bars: AAPL's session of the 15th (14:30-21:00 UTC), BHP's (which starts on the 14th
    in UTC), and EDGE_BARS.
    """
    for symbol, symbol_id in symbol_ids.items():
        days = [dt.date(2025, 1, 14), *SESSIONS, dt.date(2025, 1, 21)]
        bars = [daily_bar(day, close=f"100.{i + 1}") for i, day in enumerate(days)]
        if symbol == "BRK A":
            bars = [daily_bar(day, high=price("654321.12345678"), close="654321.1") for day in days]
        repository.upsert_bars(db_conn, symbol_id, "1day", bars)
    repository.upsert_bars(
        db_conn, symbol_ids["AAPL"], "5min", five_minute_bars(dt.datetime(2025, 1, 15, 14, 30), 78)
    )
    repository.upsert_bars(
        db_conn, symbol_ids["BHP"], "5min", five_minute_bars(dt.datetime(2025, 1, 14, 23, 0), 72)
    )
    for symbol, start, _ in EDGE_BARS:
        repository.upsert_bars(db_conn, symbol_ids[symbol], "5min", five_minute_bars(start, 1, close="50.5"))
    db_conn.commit()
    return symbol_ids


# SQL written apart from the read API: the session of a bar from its timestamp and the symbol's zone.
REFERENCE = """
    SELECT s.symbol, md.timestamp,
           CASE WHEN md.timeframe = '1day' THEN md.timestamp::date
                ELSE (md.timestamp AT TIME ZONE 'UTC' AT TIME ZONE z.zone)::date END AS session,
           md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count
    FROM market_data md JOIN symbols s ON s.id = md.symbol_id
    JOIN unnest(%(symbols)s::text[], %(zones)s::text[]) AS z(symbol, zone) ON z.symbol = s.symbol
    WHERE md.timeframe = %(timeframe)s
    ORDER BY s.symbol, md.timestamp
"""


def reference_rows(conn: psycopg.Connection, timeframe: str, start: dt.date, end: dt.date) -> list[tuple]:
    rows = conn.execute(
        REFERENCE, {"symbols": list(ZONES), "zones": list(ZONES.values()), "timeframe": timeframe}
    ).fetchall()
    return [row for row in rows if start <= row[2] <= end]


def frame_rows(bars: pd.DataFrame) -> list[tuple]:
    """Return the frame's rows as the reference query returns them: naive UTC timestamps, exact decimals."""

    def exact(value: object) -> object:
        return None if pd.isna(value) else Decimal(repr(float(value)))  # type: ignore[arg-type]

    rows = []
    for (symbol, timestamp), bar in bars.iterrows():
        rows.append(
            (
                symbol,
                timestamp.tz_convert("UTC").tz_localize(None).to_pydatetime(),
                bar["session"],
                *(exact(bar[column]) for column in ("open", "high", "low", "close")),
                int(bar["volume"]),
                exact(bar["wap"]),
                None if pd.isna(bar["bar_count"]) else int(bar["bar_count"]),
            )
        )
    return rows


# -- the read API -------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeframe", ["1day", "5min"])
def test_read_bars_returns_exactly_the_stored_bars_of_the_sessions(db_conn, stored, timeframe) -> None:
    bars = reader.read_bars(None, timeframe, SESSIONS[0], SESSIONS[-1], conn=db_conn)

    expected = reference_rows(db_conn, timeframe, SESSIONS[0], SESSIONS[-1])
    in_range_edges = sum(inside for _, _, inside in EDGE_BARS)
    assert len(expected) == (9 if timeframe == "1day" else 78 + 72 + in_range_edges)
    assert frame_rows(bars) == expected
    assert bars.index.names == ["symbol", "timestamp"] and bars.index.is_monotonic_increasing
    assert str(bars.index.dtypes["timestamp"]) == "datetime64[us, UTC]"


def test_an_asx_session_includes_its_bars_of_the_previous_utc_day(db_conn, stored) -> None:
    bhp = reader.read_bars("BHP", "5min", "2025-01-15", "2025-01-15", conn=db_conn)
    assert len(bhp) == 1 + 72  # the edge bar at midnight in Sydney, then the session
    assert bhp.index[1] == ("BHP", pd.Timestamp("2025-01-14 23:00", tz="UTC"))
    assert set(bhp["session"]) == {dt.date(2025, 1, 15)}


def test_iter_bars_streams_chunks_through_a_server_side_cursor(db_conn, stored) -> None:
    chunks, open_cursors = [], []
    for chunk in reader.iter_bars(
        ["AAPL", "BHP"], "5min", SESSIONS[0], SESSIONS[-1], conn=db_conn, chunk_rows=40
    ):
        chunks.append(chunk)
        open_cursors.append(
            [row[0] for row in db_conn.execute("SELECT name FROM pg_cursors WHERE name LIKE 'ibkr_bars_%'")]
        )

    # AAPL's 80 then BHP's 74: New York's zone name sorts first.
    assert [len(chunk) for chunk in chunks] == [40, 40, 40, 34]
    assert all(len(names) == 1 for names in open_cursors)  # each chunk fetched from the named cursor
    whole = reader.read_bars(["AAPL", "BHP"], "5min", SESSIONS[0], SESSIONS[-1], conn=db_conn)
    pd.testing.assert_frame_equal(pd.concat(chunks).sort_index(), whole)
    assert db_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_read_left_early_and_closed_ends_its_transaction_and_connection(
    db_conn, stored, monkeypatch
) -> None:
    chunks = reader.iter_bars(None, "5min", SESSIONS[0], SESSIONS[-1], conn=db_conn, chunk_rows=10)
    next(chunks)
    assert db_conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    chunks.close()
    assert db_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    opened = []
    open_connection = reader.open_connection
    monkeypatch.setattr(reader, "open_connection", lambda: opened.append(open_connection()) or opened[-1])
    chunks = reader.iter_bars(None, "5min", SESSIONS[0], SESSIONS[-1], chunk_rows=10)
    next(chunks)
    assert not opened[0].closed
    chunks.close()
    assert opened[0].closed


def test_the_read_api_opens_the_market_data_db_connection_when_given_none(stored) -> None:
    bars = reader.read_bars(["BRK A"], "1day", SESSIONS[0], SESSIONS[-1])
    assert list(bars["high"]) == [654321.12345678] * 3
    assert list(bars.index.get_level_values("symbol").unique()) == ["BRK A"]


def test_a_range_without_bars_is_an_empty_frame_of_the_same_shape(db_conn, stored) -> None:
    empty = reader.read_bars("AAPL", "1min", SESSIONS[0], SESSIONS[-1], conn=db_conn)
    assert empty.empty and tuple(empty.columns) == reader.BAR_FRAME_COLUMNS


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (
            lambda conn: reader.read_bars(["AAPL", "NOPE"], "1day", "2025-01-15", "2025-01-17", conn=conn),
            "NOPE",
        ),
        (lambda conn: reader.read_bars("AAPL", "2min", "2025-01-15", "2025-01-17", conn=conn), "'2min'"),
        (lambda conn: reader.read_bars("AAPL", "1day", "2025-01-17", "2025-01-15", conn=conn), "after end"),
        (lambda conn: reader.iter_bars("AAPL", "1day", "2025-01-17", "2025-01-15", conn=conn), "after end"),
        (lambda conn: reader.read_coverage(["NOPE"], "1day", "2025-01-15", "2025-01-17", conn=conn), "NOPE"),
    ],
    ids=[
        "unknown symbol",
        "unknown timeframe",
        "reversed range",
        "reversed range, streamed",
        "coverage",
    ],
)
def test_bad_input_is_refused_with_an_error_naming_it(db_conn, stored, call, named) -> None:
    with pytest.raises(ReadRequestError, match=named):
        call(db_conn)  # iter_bars checks at the call, before the first chunk is asked for


def test_bad_input_is_refused_before_connecting(monkeypatch) -> None:
    monkeypatch.setattr(reader, "open_connection", lambda: pytest.fail("connected on bad input"))
    with pytest.raises(ReadRequestError, match="unknown timeframe"):
        reader.read_bars("AAPL", "1week", "2025-01-15", "2025-01-17")
    with pytest.raises(ReadRequestError, match="after end"):
        reader.read_coverage("AAPL", "1day", "2025-01-17", "2025-01-15")


# -- coverage -----------------------------------------------------------------------------------------


def test_coverage_tells_no_bar_from_not_collected(db_conn, symbol_ids) -> None:
    aapl = symbol_ids["AAPL"]
    days = [dt.date(2025, 1, d) for d in (13, 14, 15, 16, 17, 21, 22)]
    repository.upsert_bars(db_conn, aapl, "1day", [daily_bar(days[0]), daily_bar(days[5])])
    repository.record_no_data_sessions(db_conn, aapl, "1day", [days[1]], "no data from IB", RUN)
    db_conn.execute("UPDATE no_data_sessions SET settled_at = NOW()")  # settled
    # A failed window of three sessions, the first of which IB has no data for: no data wins.
    failed = repository.start_attempt(
        db_conn, RUN, aapl, "1day", *(dt.datetime.combine(d, dt.time()) for d in (days[1], days[3]))
    )
    repository.finish_attempt(db_conn, failed, AttemptStatus.FAILED, error_message="pacing")
    # A one-session attempt that ended no_data (one empty answer: not settled, so not collected yet),
    # and a failure since mended by a stored bar.
    one = repository.start_attempt(db_conn, RUN, aapl, "1day", *[dt.datetime.combine(days[6], dt.time())] * 2)
    repository.finish_attempt(db_conn, one, AttemptStatus.NO_DATA)
    mended = repository.start_attempt(
        db_conn,
        RunContext("daily_market_data", "scheduled__1"),
        aapl,
        "1day",
        *[dt.datetime.combine(days[5], dt.time())] * 2,
    )
    repository.finish_attempt(db_conn, mended, AttemptStatus.FAILED)
    db_conn.commit()

    coverage = reader.read_coverage("AAPL", "1day", days[0], days[-1], conn=db_conn)

    # The 20th (Martin Luther King Jr. Day) is no NASDAQ session: no row.
    assert [day for _, day in coverage.index] == days
    assert list(coverage["status"]) == [
        "complete", "no_data", "failed", "failed", "not_collected", "complete", "not_collected",
    ]  # fmt: skip
    assert list(coverage["collected"]) == [True, True, False, False, False, True, False]
    assert list(coverage["bars"]) == [1, 0, 0, 0, 0, 1, 0]
    assert set(coverage["exchange"]) == {"NASDAQ"}


def test_coverage_counts_intraday_bars_against_the_sessions_schedule(db_conn, symbol_ids) -> None:
    aapl = symbol_ids["AAPL"]
    repository.upsert_bars(db_conn, aapl, "5min", five_minute_bars(dt.datetime(2025, 1, 15, 14, 30), 78))
    repository.upsert_bars(db_conn, aapl, "5min", five_minute_bars(dt.datetime(2025, 1, 16, 14, 30), 40))
    db_conn.execute(
        "UPDATE symbols SET first_available_date = %s WHERE id = %s", (dt.date(2025, 1, 15), aapl)
    )
    db_conn.commit()

    coverage = reader.read_coverage("AAPL", "5min", "2025-01-14", "2025-01-17", conn=db_conn)

    assert list(coverage["status"]) == [
        "no_data",
        "complete",
        "partial",
        "not_collected",
    ]  # 14th: before IB's data
    assert list(coverage["bars"]) == [0, 78, 40, 0]
    assert list(coverage["expected_bars"]) == [78, 78, 78, 78]


# -- exports ------------------------------------------------------------------------------------------


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``directory``: its modification time (ns) and content."""
    return {
        str(path.relative_to(directory)): (path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def parquet_rows(directory: Path) -> list[tuple]:
    """Return the export read with pyarrow (symbol from the Hive path) as the reference query returns rows."""
    rows = []
    for row in pq.read_table(directory).to_pylist():
        rows.append(
            (
                row["symbol"],
                row["timestamp"].astimezone(dt.UTC).replace(tzinfo=None),
                row["session"],
                *(Decimal(repr(row[column])) for column in ("open", "high", "low", "close")),
                row["volume"],
                None if row["wap"] is None else Decimal(repr(row["wap"])),
                row["bar_count"],
            )
        )
    return sorted(rows, key=lambda row: (row[0], row[1]))


def test_an_export_read_back_with_pyarrow_holds_the_same_rows(db_conn, stored, tmp_path) -> None:
    summary = exports.export_bars(tmp_path, None, "5min", SESSIONS[0], SESSIONS[-1], conn=db_conn)

    # One file per symbol and month; each holds its whole month (the bars outside the range too).
    files = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.parquet"))
    assert files == [
        "timeframe=5min/symbol=AAPL/year=2025/2025-01.parquet",
        "timeframe=5min/symbol=BHP/year=2025/2025-01.parquet",
    ]
    assert (summary.files_written, summary.bars_written, summary.files_unchanged) == (2, 78 + 72 + 8, 0)
    assert parquet_rows(tmp_path) == reference_rows(
        db_conn, "5min", dt.date(2025, 1, 1), dt.date(2025, 1, 31)
    )
    table = pq.read_table(tmp_path)
    assert set(table.column("timeframe").to_pylist()) == {"5min"} and set(
        table.column("year").to_pylist()
    ) == {2025}
    for name in files:
        assert pq.read_schema(tmp_path / name).equals(exports.parquet_schema())


def test_a_daily_export_has_one_file_per_symbol_and_year_named_hive_style(db_conn, stored, tmp_path) -> None:
    exports.export_bars(tmp_path, None, "1day", "2024-12-31", SESSIONS[-1], conn=db_conn)

    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.parquet")) == [
        "timeframe=1day/symbol=AAPL/year=2025/2025.parquet",
        "timeframe=1day/symbol=BHP/year=2025/2025.parquet",
        "timeframe=1day/symbol=BRK A/year=2025/2025.parquet",
    ]  # 2024 has no bars: no file
    assert parquet_rows(tmp_path) == reference_rows(
        db_conn, "1day", dt.date(2024, 1, 1), dt.date(2025, 12, 31)
    )
    assert len(parquet_rows(tmp_path)) == 15


def test_a_second_export_with_nothing_new_writes_nothing(db_conn, stored, tmp_path) -> None:
    exports.export_bars(tmp_path, None, "5min", SESSIONS[0], SESSIONS[-1], conn=db_conn)
    before = snapshot(tmp_path)

    again = exports.export_bars(tmp_path, None, "5min", SESSIONS[0], SESSIONS[-1], conn=db_conn)

    assert (again.files_written, again.files_unchanged) == (0, 2)
    assert snapshot(tmp_path) == before


def test_after_a_changed_bar_only_its_file_is_written_again(db_conn, stored, tmp_path) -> None:
    exports.export_bars(tmp_path, None, "1day", SESSIONS[0], SESSIONS[-1], conn=db_conn)
    before = snapshot(tmp_path)
    changed = "timeframe=1day/symbol=BHP/year=2025/2025.parquet"

    # IB revised a bar: the upsert replaces it (a revision, not a new row).
    result = repository.upsert_bars(db_conn, stored["BHP"], "1day", [daily_bar(SESSIONS[1], close="100.75")])
    db_conn.commit()
    assert (result.inserted, result.revised) == (0, 1)
    again = exports.export_bars(tmp_path, None, "1day", SESSIONS[0], SESSIONS[-1], conn=db_conn)

    after = snapshot(tmp_path)
    assert (again.files_written, again.files_unchanged) == (1, 2)
    assert set(after) == set(before)
    assert {path for path in after if after[path] != before[path]} == {changed}
    bhp = {row[2]: row[6] for row in parquet_rows(tmp_path) if row[0] == "BHP"}
    assert bhp[SESSIONS[1]] == Decimal("100.75")


def test_a_change_that_leaves_updated_at_alone_is_seen_too(db_conn, stored, tmp_path) -> None:
    exports.export_bars(tmp_path, "AAPL", "1day", SESSIONS[0], SESSIONS[-1], conn=db_conn)
    db_conn.execute(
        "UPDATE market_data SET volume = volume + 1 WHERE symbol_id = %s AND timeframe = '1day'",
        (stored["AAPL"],),
    )
    db_conn.commit()
    again = exports.export_bars(tmp_path, "AAPL", "1day", SESSIONS[0], SESSIONS[-1], conn=db_conn)
    assert again.files_written == 1


def test_the_progress_bar_goes_to_stderr(db_conn, stored, tmp_path, capsys) -> None:
    exports.export_bars(tmp_path, None, "5min", SESSIONS[0], SESSIONS[-1], conn=db_conn, progress=True)
    captured = capsys.readouterr()
    assert "158/158" in captured.err and captured.out == ""


# -- the command line ---------------------------------------------------------------------------------


def export_argv(out: object, *extra: str, start: str = "2025-01-15", end: str = "2025-01-17") -> list[str]:
    return ["export", "--from", start, "--to", end, "--out", str(out), *extra]


def unwritable_directory(tmp_path: Path) -> Path:
    """Return a directory that exists and that this process cannot write in.

    Root writes through permissions, but not in sysfs.
    """
    if os.geteuid() == 0:
        return Path("/sys")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return locked


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (
            lambda tmp: export_argv(tmp, start="2025-01-17", end="2025-01-15"),
            "--from (2025-01-17) is after --to",
        ),
        (lambda tmp: export_argv(tmp, start="2025-02-30"), "--from must be a date as YYYY-MM-DD"),
        (lambda tmp: export_argv(tmp, "--timeframe", "2min"), "--timeframe: unknown timeframe '2min'"),
        (lambda tmp: export_argv(tmp / "a-file"), "is a file; give a directory"),
        (lambda tmp: export_argv(tmp / "a-file" / "below"), "cannot write there"),
        (lambda tmp: export_argv(unwritable_directory(tmp)), "cannot write there"),
        (lambda tmp: export_argv(""), "--out is empty"),
        (lambda tmp: ["export", "--to", "2025-01-17", "--out", str(tmp)], "--from and --to are required"),
    ],
    ids=[
        "reversed range",
        "bad date",
        "bad timeframe",
        "out is a file",
        "out under a file",
        "unwritable",
        "no out",
        "no from",
    ],
)
def test_bad_export_input_is_one_error_line_and_exit_2_before_anything_starts(
    argv, named, tmp_path, monkeypatch, capsys
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setattr(local_env, "configure_airflow", lambda *args: pytest.fail("started on bad input"))

    assert local_cli.main(argv(tmp_path)) == 2

    captured = capsys.readouterr()
    assert len(captured.err.splitlines()) == 1 and captured.err.startswith("error:") and named in captured.err
    assert captured.out == ""


def test_an_unknown_symbol_is_one_error_line_and_exit_2(market_db, stored, tmp_path, capsys) -> None:
    assert local_cli.main(export_argv(tmp_path, "--symbols", "AAPL,NOPE")) == 2
    errors = capsys.readouterr().err.splitlines()
    assert [line for line in errors if line.startswith("error:")] == [
        "error: unknown symbols: NOPE; the symbols table has no such name "
        "(add it to the universe and run load-symbols)"
    ]
    assert not any("Traceback" in line for line in errors)


def test_make_export_writes_then_writes_nothing_the_second_time(market_db, stored, tmp_path, capsys) -> None:
    argv = export_argv(tmp_path / "parquet", "--timeframe", "5min", "--symbols", "AAPL")

    assert local_cli.main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    before = snapshot(tmp_path)
    assert local_cli.main(argv) == 0
    second = capsys.readouterr().out.splitlines()

    assert first[-1].endswith("1 files written (82 bars), 0 unchanged, of 1 with bars in the range")
    assert second[-1].endswith("0 files written (0 bars), 1 unchanged, of 1 with bars in the range")
    assert snapshot(tmp_path) == before
