"""The backfill DAG's task bodies: check the params, find the gaps, fill one symbol's gaps, summarise.

The DAG file only wires these together. ``collect_gap`` plans its symbol's requests again from the
database when it starts, so a retry (or a second backfill running meanwhile) never asks IB for what
is already stored or known to have no data.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ibkr_market_data import repository, run_metrics
from ibkr_market_data.backfill import (
    NO_DATA_FROM_IB,
    BackfillRange,
    GapReport,
    SymbolGaps,
    before_first_available,
    check_range,
    request_targets,
    symbol_gaps,
)
from ibkr_market_data.bars import Bar
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.errors import IbkrError, IbkrNoDataError
from ibkr_market_data.pacing import minimum_duration
from ibkr_market_data.planning import ALREADY_COLLECTED, DAILY_TIMEFRAME, session_timestamp
from ibkr_market_data.repository import RunContext, SymbolRow
from ibkr_market_data.run_dates import InvalidRunParamError, parse_date_param
from ibkr_market_data.tasks.common import as_name_list, fail_on_problems, ib_session, market_db
from ibkr_market_data.tasks.daily import DRY_RUN_LATENCY_SECONDS, selected_exchanges

log = logging.getLogger(__name__)

NO_GAPS = "no gaps"


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def check_params(params: Mapping[str, Any], now: dt.datetime | None = None) -> BackfillRange:
    """The backfill range the params ask for; InvalidRunParamError naming the param on a bad one.

    Checks everything that needs no database: dates present, in order, not in the future, within
    what IB serves; exchanges known. ``validate`` adds the symbol check.
    """
    start = parse_date_param(params.get("start_date"), "start_date")
    end = parse_date_param(params.get("end_date"), "end_date")
    for name, value in (("start_date", start), ("end_date", end)):
        if value is None:
            raise InvalidRunParamError(f"Param {name!r} is required: a date as YYYY-MM-DD")
    assert start is not None and end is not None
    check_range(start, end, _now(now).astimezone(dt.UTC).date())
    return BackfillRange(
        start=start,
        end=end,
        exchanges=tuple(selected_exchanges(params)),
        symbols=tuple(as_name_list(params.get("symbols"))),
        dry_run=bool(params.get("dry_run")),
    )


def check_symbols(conn: Any, request: BackfillRange) -> None:
    """Refuse symbols the ``symbols`` table does not know; warn about those filtered out."""
    if not request.symbols:
        return
    unknown = sorted(set(request.symbols) - repository.known_symbol_names(conn))
    if unknown:
        raise InvalidRunParamError(
            f"Param 'symbols' names unknown symbols: {', '.join(unknown)}; "
            "add them to the universe and run load-symbols first"
        )
    selected = {
        row.symbol
        for row in repository.select_symbols(conn, symbols=request.symbols, exchanges=request.exchanges)
    }
    left_out = sorted(set(request.symbols) - selected)
    if left_out:
        log.warning(
            "Not backfilled (inactive, or not on %s): %s", ", ".join(request.exchanges), ", ".join(left_out)
        )


def validate(params: Mapping[str, Any], now: dt.datetime | None = None) -> dict[str, object]:
    """Check every param before any request; returns the range for the next tasks."""
    request = check_params(params, now)
    conn = market_db().get_conn()
    try:
        check_symbols(conn, request)
    finally:
        conn.close()
    log.info(
        "Backfill %s..%s on %s%s%s",
        request.start,
        request.end,
        ", ".join(request.exchanges),
        f", symbols {', '.join(request.symbols)}" if request.symbols else "",
        " (dry run)" if request.dry_run else "",
    )
    return request.to_dict()


def gap_report(conn: Any, request: BackfillRange, now: dt.datetime) -> tuple[GapReport, dict[int, SymbolRow]]:
    """Every selected active symbol's gaps, read from ``market_data``, ``no_data_sessions`` and ``symbols``."""
    rows = repository.select_symbols(conn, symbols=request.symbols, exchanges=request.exchanges)
    ids = [row.id for row in rows]
    stored = repository.existing_bar_dates(conn, ids, DAILY_TIMEFRAME, request.start, request.end)
    no_data = repository.no_data_session_dates(conn, ids, DAILY_TIMEFRAME, request.start, request.end)
    first_available = repository.first_available_dates(conn, ids)
    gaps = [
        symbol_gaps(
            row,
            request.start,
            request.end,
            now,
            stored.get(row.id, ()),
            no_data.get(row.id, ()),
            first_available.get(row.id),
        )
        for row in rows
    ]
    return GapReport(request, gaps), {row.id: row for row in rows}


def find_gaps(
    request_data: Mapping[str, object], run: RunContext, now: dt.datetime | None = None
) -> list[dict[str, object]]:
    """Log the gap report; returns one item per symbol with gaps (none in a dry run).

    Symbols without gaps get their ``skipped`` row in ``collection_logs`` here.
    """
    request = BackfillRange.from_dict(dict(request_data))
    conn = market_db().get_conn()
    try:
        report, rows = gap_report(conn, request, _now(now))
        for line in report.lines():
            log.info("%s", line)
        if request.dry_run:
            _log_dry_run(report, rows)
            return []
        window = (session_timestamp(request.start), session_timestamp(request.end))
        complete = [
            (gaps.symbol_id, _no_gaps_reason(request.start, request.end))
            for gaps in report.symbols
            if gaps.complete
        ]
        repository.log_skipped(conn, run, complete, DAILY_TIMEFRAME, *window)
        conn.commit()
    finally:
        conn.close()
    return [
        {
            "symbol": gaps.symbol,
            "row": asdict(rows[gaps.symbol_id]),
            "start": request.start.isoformat(),
            "end": request.end.isoformat(),
            "missing": len(gaps.missing),
            "runs": len(gaps.runs),
            "requests": len(gaps.requests),
        }
        for gaps in report.with_gaps
    ]


def _log_dry_run(report: GapReport, rows: Mapping[int, SymbolRow]) -> None:
    requests = 0
    for gaps in report.with_gaps:
        for target in request_targets(rows[gaps.symbol_id], gaps):
            requests += 1
            log.info(
                "Dry run: would request %s %s of %s ending %s",
                target.duration,
                target.bar_size,
                target.contract(),
                target.end_date_time,
            )
    estimate = minimum_duration(requests, small_bars=False, in_flight=1, latency=DRY_RUN_LATENCY_SECONDS)
    log.info(
        "Dry run: %d requests for %d symbols. IB's rules set no hard limit on daily bars; at %.1f s a "
        "request and one at a time that is %.0f s, divided by the ibkr pool's slots. Nothing sent or written.",
        requests,
        len(report.with_gaps),
        DRY_RUN_LATENCY_SECONDS,
        estimate,
    )


def collect_gap(gap: Mapping[str, Any], run: RunContext, now: dt.datetime | None = None) -> dict[str, object]:
    """Fill one symbol's gaps; raises PermanentFailure, or CollectionFailed when a retry may help."""
    with ib_session(paced=True) as (conn, hook):
        outcome = fill_symbol_gaps(
            conn,
            hook,
            SymbolRow(**gap["row"]),
            dt.date.fromisoformat(str(gap["start"])),
            dt.date.fromisoformat(str(gap["end"])),
            run,
            _now(now),
        )
    return outcome.to_dict()


@dataclass
class GapOutcome:
    """What filling one symbol's gaps did; travels through XCom as a dict."""

    symbol: str
    status: str = "completed"  # completed | no_data | skipped
    requests: int = 0
    bars_collected: int = 0
    bars_inserted: int = 0
    bars_revised: int = 0
    no_data_sessions: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def fill_symbol_gaps(
    conn: Any, hook: Any, row: SymbolRow, start: dt.date, end: dt.date, run: RunContext, now: dt.datetime
) -> GapOutcome:
    """Plan ``row``'s gaps afresh, send each request, record the sessions IB had no bar for.

    Airflow-agnostic: takes an open connection and hook. Raises CollectionFailed from
    ``collect_target`` on a failed request; what earlier requests stored stays stored.
    """
    from ibkr_market_data.collect import collect_target

    gaps = _fresh_gaps(conn, row, start, end, now)
    outcome = GapOutcome(row.symbol)
    if gaps.complete:
        window = (session_timestamp(start), session_timestamp(end))
        reason = f"{ALREADY_COLLECTED}: nothing missing in {start.isoformat()}..{end.isoformat()}"
        repository.log_skipped(conn, run, [(row.id, reason)], DAILY_TIMEFRAME, *window)
        conn.commit()
        log.info("%s: skipped, %s", row.symbol, reason)
        outcome.status = "skipped"
        return outcome

    def store(db: Any, symbol_id: int, timeframe: str, bars: Sequence[Bar]) -> repository.UpsertResult:
        return repository.store_backfilled_bars(db, symbol_id, timeframe, bars, run)

    first_available: dt.date | None = None
    asked_head_timestamp = False
    for target in request_targets(row, gaps):
        first, last = target.first_session_date, target.session_date
        requests_before = hook.requests_sent
        result = collect_target(conn, hook, target, run, store=store)
        outcome.requests += hook.requests_sent - requests_before
        outcome.bars_collected += result.records_collected
        outcome.bars_inserted += result.bars_inserted
        outcome.bars_revised += result.bars_revised
        have = repository.existing_bar_dates(conn, [row.id], DAILY_TIMEFRAME, first, last).get(row.id, set())
        absent = [day for day in gaps.missing if first <= day <= last and day not in have]
        if not absent:
            continue
        if absent[0] == gaps.missing[0] and not asked_head_timestamp:
            # Nothing at the start of the gaps: perhaps listed later. IB's head timestamp says from
            # when it has data; it is paced like small bars, so it is asked at most once, and only here.
            asked_head_timestamp = True
            first_available = _ask_first_available(conn, hook, row, target.contract())
        outcome.no_data_sessions += _record_no_data(conn, row, absent, first_available, run)
    if not outcome.bars_collected:
        outcome.status = "no_data"
    log.info(
        "%s: %d missing sessions in %s..%s: %d requests, %d bars (%d new, %d revised), %d sessions without data at IB",
        row.symbol,
        len(gaps.missing),
        start,
        end,
        outcome.requests,
        outcome.bars_collected,
        outcome.bars_inserted,
        outcome.bars_revised,
        outcome.no_data_sessions,
    )
    return outcome


def _no_gaps_reason(start: dt.date, end: dt.date) -> str:
    return f"{NO_GAPS} in {start.isoformat()}..{end.isoformat()}"


def _fresh_gaps(conn: Any, row: SymbolRow, start: dt.date, end: dt.date, now: dt.datetime) -> SymbolGaps:
    stored = repository.existing_bar_dates(conn, [row.id], DAILY_TIMEFRAME, start, end).get(row.id, set())
    no_data = repository.no_data_session_dates(conn, [row.id], DAILY_TIMEFRAME, start, end).get(row.id, set())
    first_available = repository.first_available_dates(conn, [row.id]).get(row.id)
    return symbol_gaps(row, start, end, now, stored, no_data, first_available)


def _ask_first_available(conn: Any, hook: Any, row: SymbolRow, contract: ContractSpec) -> dt.date | None:
    try:
        first_available = hook.head_timestamp(contract)
    except IbkrNoDataError:
        log.info("%s: IB has no head timestamp", row.symbol)
        return None
    except IbkrError as exc:
        log.warning("%s: head timestamp failed, sessions are recorded without it: %s", row.symbol, exc)
        return None
    repository.set_first_available_date(conn, row.id, first_available)
    conn.commit()
    log.info("%s: IB has data from %s (head timestamp)", row.symbol, first_available)
    return first_available


def _record_no_data(
    conn: Any, row: SymbolRow, sessions: Sequence[dt.date], first_available: dt.date | None, run: RunContext
) -> int:
    before = [day for day in sessions if first_available is not None and day < first_available]
    after = [day for day in sessions if first_available is None or day >= first_available]
    if before:
        assert first_available is not None
        repository.record_no_data_sessions(
            conn, row.id, DAILY_TIMEFRAME, before, before_first_available(first_available), run
        )
    if after:
        repository.record_no_data_sessions(conn, row.id, DAILY_TIMEFRAME, after, NO_DATA_FROM_IB, run)
    conn.commit()
    log.info(
        "%s: %d sessions recorded as %s (%s..%s)",
        row.symbol,
        len(sessions),
        NO_DATA_FROM_IB,
        sessions[0],
        sessions[-1],
    )
    return len(sessions)


def summarize(
    request_data: Mapping[str, object], gaps: Sequence[Mapping[str, object]], run: RunContext
) -> dict[str, int]:
    """Counts per status and what the run did; PermanentFailure naming failed or unfinished symbols."""
    request = BackfillRange.from_dict(dict(request_data))
    if request.dry_run:
        log.info("Dry run for %s..%s: nothing was requested or written", request.start, request.end)
        return {}
    conn = market_db().get_conn()
    try:
        counts = repository.run_summary(conn, run.dag_id, run.run_id)
        failures = repository.run_failures(conn, run.dag_id, run.run_id)
        finished = repository.symbols_with_outcome(conn, run.dag_id, run.run_id)
        totals = repository.run_backfill_totals(conn, run.dag_id, run.run_id)
        run_metrics.record(conn, run.dag_id, run.run_id)
    finally:
        conn.close()
    missing = sorted(str(gap["symbol"]) for gap in gaps if gap["row"]["id"] not in finished)  # type: ignore[index]
    log.info(
        "Backfill %s..%s: %d symbols with gaps; attempts %s; %d requests, %d bars, %d revised, %d sessions without data",
        request.start,
        request.end,
        len(gaps),
        ", ".join(f"{status} {count}" for status, count in sorted(counts.items())) or "none",
        totals["requests_sent"],
        totals["bars_collected"],
        totals["bars_revised"],
        totals["no_data_sessions"],
    )
    fail_on_problems(f"Backfill {request.start}..{request.end}", failures, missing, "symbols with gaps")
    return {**counts, **totals}
