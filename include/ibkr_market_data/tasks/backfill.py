"""The backfill DAG's task bodies: check the params, find the gaps, fill one symbol's gaps, summarise.

``collect_gap`` plans its requests again from the database, so a retry never asks IB for what is
stored or known to have no data. See docs/backfill.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

from ibkr_market_data import calendars, repository
from ibkr_market_data.backfill_plan import (
    NO_DATA_FROM_IB,
    BackfillRange,
    GapReport,
    SymbolGaps,
    before_first_available,
    check_backfill_range,
    no_gaps_reason,
    report_gaps,
    request_targets,
    symbol_gaps,
)
from ibkr_market_data.bars import Bar
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.daily_plan import session_timestamp
from ibkr_market_data.errors import IbkrError, IbkrNoDataError, InvalidRunParamError, UnknownTimeframeError
from ibkr_market_data.grouping import BAR_SECONDS, REQUEST_SECONDS, group_count, group_items
from ibkr_market_data.payloads import (
    BackfillRequestPayload,
    GapOutcomePayload,
    GapPayload,
    PlannedGroupPayload,
    SymbolRowPayload,
)
from ibkr_market_data.repository import AttemptStatus, RunContext, SymbolRow
from ibkr_market_data.run_dates import parse_date_param
from ibkr_market_data.settings import IBKR_POOL_SLOTS
from ibkr_market_data.tasks.database import market_connection, sessions_with_bars, stored_sessions
from ibkr_market_data.tasks.ib_session import ib_session
from ibkr_market_data.tasks.params import (
    as_name_list,
    check_quality_settings,
    select_wanted_symbols,
    selected_exchanges,
)
from ibkr_market_data.tasks.summaries import log_dry_run, summarize_run, upstream_failed
from ibkr_market_data.timeframes import DAILY, TIMEFRAMES, Timeframe

if TYPE_CHECKING:
    import psycopg

    from ibkr_market_data.hooks.ibkr import IbkrHook

log = logging.getLogger(__name__)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def check_params(params: Mapping[str, Any], now: dt.datetime | None = None) -> BackfillRange:
    """Return the backfill range the params ask for, checked without the database.

    Dates present, in order, not in the future, within what IB serves; exchanges known.
    ``validate`` adds the symbol check.

    :param params: the run's params.
    :param now: the current time; default the clock.
    :raises InvalidRunParamError: naming the bad param.
    """
    start = parse_date_param(params.get("start_date"), "start_date")
    end = parse_date_param(params.get("end_date"), "end_date")
    for name, value in (("start_date", start), ("end_date", end)):
        if value is None:
            raise InvalidRunParamError(f"Param {name!r} is required: a date as YYYY-MM-DD")
    assert start is not None and end is not None
    check_backfill_range(start, end, _now(now).astimezone(dt.UTC).date())
    check_quality_settings()
    return BackfillRange(
        start=start,
        end=end,
        exchanges=tuple(selected_exchanges(params)),
        symbols=tuple(as_name_list(params.get("symbols"))),
        dry_run=bool(params.get("dry_run")),
        recheck_no_data=bool(params.get("recheck_no_data")),
        timeframe=backfill_timeframe(params).name,
    )


def backfill_timeframe(params: Mapping[str, Any]) -> Timeframe:
    """Return the ``timeframe`` param of a backfill: one timeframe, default daily.

    :raises InvalidRunParamError: an unknown timeframe.
    """
    from ibkr_market_data import timeframes

    value = str(params.get("timeframe") or timeframes.DAILY.name)
    try:
        return timeframes.timeframe(value)
    except UnknownTimeframeError as exc:
        raise InvalidRunParamError(f"Param 'timeframe': {exc}") from None


def check_known_symbols(conn: psycopg.Connection, request: BackfillRange) -> None:
    """Refuse symbols the ``symbols`` table does not know; warn about those filtered out.

    :raises InvalidRunParamError: naming the unknown symbols.
    """
    if request.symbols:
        select_wanted_symbols(conn, request.symbols, request.exchanges)


def validate(params: Mapping[str, Any], now: dt.datetime | None = None) -> BackfillRequestPayload:
    """Check every param before any request; return the range for the next tasks.

    :param params: the run's params.
    :param now: the current time; default the clock.
    :raises InvalidRunParamError: naming the bad param.
    """
    request = check_params(params, now)
    with market_connection() as conn:
        check_known_symbols(conn, request)
    log.info(
        "Backfill of %s bars %s..%s on %s%s%s",
        request.timeframe,
        request.start,
        request.end,
        ", ".join(request.exchanges),
        f", symbols {', '.join(request.symbols)}" if request.symbols else "",
        " (dry run)" if request.dry_run else "",
    )
    return request.to_dict()


def gap_report(
    conn: psycopg.Connection, request: BackfillRange, now: dt.datetime
) -> tuple[GapReport, dict[int, SymbolRow]]:
    """Return every selected active symbol's gaps, read from the bars, no-data sessions and symbols."""
    rows = repository.select_symbols(conn, symbols=request.symbols, exchanges=request.exchanges)
    no_data = (
        {}
        if request.recheck_no_data
        else repository.no_data_session_dates(
            conn, [row.id for row in rows], request.timeframe, request.start, request.end
        )
    )
    return _gaps(conn, request, rows, now, no_data), {row.id: row for row in rows}


def _gaps(
    conn: psycopg.Connection,
    request: BackfillRange,
    rows: Sequence[SymbolRow],
    now: dt.datetime,
    no_data: Mapping[int, set[dt.date]],
) -> GapReport:
    """Return the gaps of ``rows`` in the range: sessions neither stored nor a date of ``no_data``."""
    return report_gaps(
        request,
        rows,
        now,
        stored=stored_sessions(conn, request.tf, rows, request.start, request.end),
        no_data=no_data,
        first_available=repository.first_available_dates(conn, [row.id for row in rows]),
        memberships=repository.membership_periods(conn, [row.id for row in rows]),
    )


#: Seconds of a regular US session, to estimate the intraday bars a gap's sessions hold.
REGULAR_SESSION_SECONDS = 23_400


def gap_seconds(gap: GapPayload) -> float:
    """Return the expected seconds of filling ``gap``: its requests' latency and its bars' writes."""
    bar_seconds = TIMEFRAMES[gap["timeframe"]].bar_seconds
    bars_per_session = REGULAR_SESSION_SECONDS // bar_seconds if bar_seconds else 1
    return gap["requests"] * REQUEST_SECONDS + gap["missing"] * bars_per_session * BAR_SECONDS


def find_gaps(
    request_data: BackfillRequestPayload, run: RunContext, now: dt.datetime | None = None
) -> list[PlannedGroupPayload]:
    """Log the gap report; plan the symbols with gaps in as many groups as their gaps' work pays for.

    Symbols without gaps, and those no gap can be found for (an exchange without a calendar), get
    their ``skipped`` row in ``collection_logs`` here.

    :param request_data: the range ``validate`` returned.
    :param run: the run's identity.
    :param now: the current time; default the clock.
    :return: the mapped task's references to the groups in ``planned_groups``; none in a dry run.
    """
    request = BackfillRange.from_dict(request_data)
    with market_connection() as conn:
        report, rows = gap_report(conn, request, _now(now))
        for line in report.lines():
            log.info("%s", line)
        if request.dry_run:
            targets = [
                target
                for gaps in report.with_gaps
                for target in request_targets(rows[gaps.symbol_id], gaps, request.tf)
            ]
            log_dry_run(targets, len(report.with_gaps))
            return []
        window = (session_timestamp(request.start), session_timestamp(request.end))
        skipped = [
            (gaps.symbol_id, no_gaps_reason(request.start, request.end))
            for gaps in report.symbols
            if gaps.complete
        ] + [(skip.symbol_id, skip.reason) for skip in report.skips]
        repository.log_skipped(conn, run, skipped, request.timeframe, *window)
        items: list[GapPayload] = [
            {
                "symbol_id": gaps.symbol_id,
                "symbol": gaps.symbol,
                "row": cast(SymbolRowPayload, asdict(rows[gaps.symbol_id])),
                "start": request.start.isoformat(),
                "end": request.end.isoformat(),
                "missing": len(gaps.missing),
                "runs": len(gaps.runs),
                "requests": len(gaps.requests),
                "recheck_no_data": request.recheck_no_data,
                "timeframe": request.timeframe,
            }
            for gaps in report.with_gaps
        ]
        # A backfill group fills its gaps one after another: one request in flight.
        work = sum(gap_seconds(gap) for gap in items)
        count = group_count(len(items), work, IBKR_POOL_SLOTS, in_flight=1)
        groups = group_items(items, count, lambda gap: gap["symbol"], gap_seconds)
        if len(groups) < len(items):
            log.info("Grouped %d symbols with gaps into %d task instances", len(items), len(groups))
        planned = repository.save_plan(conn, run, groups)
        conn.commit()
    return [group.to_dict() for group in planned]


def collect_gap(
    group: PlannedGroupPayload, run: RunContext, now: dt.datetime | None = None
) -> list[GapOutcomePayload]:
    """Fill the gaps of a group's symbols, one after another on one connection.

    Every symbol has its try before anything is raised; a retry plans each symbol's gaps afresh.

    :param group: the mapped item: where the group's symbols are in ``planned_groups``.
    :param run: the run's identity and try.
    :param now: the current time; default the clock.
    :return: what filling each symbol's gaps did.
    :raises CollectionError: naming each symbol that failed, when a retry may help.
    :raises PermanentError: naming each symbol that failed, when no retry can.
    """
    from ibkr_market_data.attempt import SymbolOutcome
    from ibkr_market_data.errors import CollectionError

    outcomes: list[GapOutcomePayload] = []
    failures: list[CollectionError] = []
    # Paced: the head timestamp request counts against IB's hard pacing limits like small bars.
    with ib_session(paced=True) as (conn, hook):
        gaps = cast(list[GapPayload], repository.planned_group(conn, run, group["index"]))
        conn.commit()
        rows = resolve_again(conn, hook, [SymbolRow(**gap["row"]) for gap in gaps], run, _now(now))
        for gap in gaps:
            if gap["symbol_id"] not in rows:
                outcomes.append(GapOutcome(gap["symbol"], AttemptStatus.SKIPPED).to_dict())
                continue
            try:
                outcome = fill_symbol_gaps(
                    conn,
                    hook,
                    rows[gap["symbol_id"]],
                    dt.date.fromisoformat(gap["start"]),
                    dt.date.fromisoformat(gap["end"]),
                    run,
                    _now(now),
                    recheck_no_data=gap.get("recheck_no_data", False),
                    tf=TIMEFRAMES[gap.get("timeframe", DAILY.name)],
                )
            except CollectionError as exc:
                failures.append(exc)
                continue
            outcomes.append(outcome.to_dict())
        if failures:
            if len(gaps) == 1:
                raise failures[0]
            reasons = "; ".join(f"{failure.outcome.symbol}: {failure.outcome.reason}" for failure in failures)
            raise CollectionError(
                SymbolOutcome(
                    group["label"],
                    AttemptStatus.FAILED,
                    reason=f"{len(failures)} of {len(gaps)} symbols failed: {reasons}",
                ),
                retryable=any(failure.retryable for failure in failures),
            )
    return outcomes


def resolve_again(
    conn: psycopg.Connection, hook: IbkrHook, rows: Sequence[SymbolRow], run: RunContext, now: dt.datetime
) -> dict[int, SymbolRow]:
    """Resolve ``rows`` again before their history is asked for; return them by id, as they are now.

    A new conId replaces the old one in the row returned; a delisted symbol (IB keeps no history of
    it) is left out, with a ``skipped`` row naming the delisting.
    """
    from ibkr_market_data.identity import IdentityStatus, recheck_identities

    fresh = {row.id: row for row in rows}
    for outcome in recheck_identities(conn, hook, rows, now.date(), DETECTED_BY_BACKFILL):
        if outcome.status is IdentityStatus.CON_ID_CHANGE:
            fresh[outcome.symbol_id] = dataclasses.replace(
                fresh[outcome.symbol_id], con_id=outcome.new_con_id
            )
        elif outcome.status is IdentityStatus.DELISTED:
            del fresh[outcome.symbol_id]
            moment = session_timestamp(now.date())
            repository.log_skipped(
                conn, run, [(outcome.symbol_id, outcome.reason)], DAILY.name, moment, moment
            )
            conn.commit()
    return fresh


#: ``corporate_actions.detected_by`` of a change found when a backfill resolved its symbols again.
DETECTED_BY_BACKFILL = "backfill"


@dataclass
class GapOutcome:
    """What filling one symbol's gaps did; travels through XCom as a dict."""

    symbol: str
    status: AttemptStatus = AttemptStatus.COMPLETED  # completed, no_data or skipped
    requests: int = 0
    bars_collected: int = 0
    bars_inserted: int = 0
    bars_revised: int = 0
    no_data_sessions: int = 0

    def to_dict(self) -> GapOutcomePayload:
        """Return the outcome as its XCom payload."""
        return cast(GapOutcomePayload, asdict(self))


def fill_symbol_gaps(
    conn: psycopg.Connection,
    hook: IbkrHook,
    row: SymbolRow,
    start: dt.date,
    end: dt.date,
    run: RunContext,
    now: dt.datetime,
    recheck_no_data: bool = False,
    tf: Timeframe = DAILY,
) -> GapOutcome:
    """Plan ``row``'s gaps of ``tf`` afresh, send each request, record the sessions IB had no bar for.

    A session is asked again until IB answered empty for it on two different days. When IB's head
    timestamp could not be asked, sessions left without bars are not recorded: the next backfill
    asks again.

    :param conn: the task's market-data connection.
    :param hook: the IBKR hook.
    :param row: the symbol.
    :param start: the first day of the range.
    :param end: the last day of the range.
    :param run: the run's identity and try.
    :param now: the current time.
    :param recheck_no_data: ask again even for sessions settled as without data.
    :param tf: the timeframe.
    :raises CollectionError: a request failed; what earlier requests stored stays stored.
    """
    from ibkr_market_data.attempt import collect_target

    gaps = _fresh_gaps(conn, row, start, end, now, recheck_no_data, tf)
    outcome = GapOutcome(row.symbol)
    if gaps.complete:
        # Filled since find_gaps ran: by this task's previous try, or another backfill.
        window = (session_timestamp(start), session_timestamp(end))
        reason = no_gaps_reason(start, end)
        repository.log_skipped(conn, run, [(row.id, reason)], tf.name, *window)
        conn.commit()
        log.info("%s: skipped, %s", row.symbol, reason)
        outcome.status = AttemptStatus.SKIPPED
        return outcome

    def store(
        db: psycopg.Connection, symbol_id: int, timeframe: str, bars: Sequence[Bar]
    ) -> repository.UpsertResult:
        return repository.store_backfilled_bars(db, symbol_id, timeframe, bars, run)

    first_available: dt.date | None = None
    asked_head_timestamp = head_timestamp_failed = False
    for target in request_targets(row, gaps, tf):
        first, last = target.first_session_date, target.session_date
        requests_before = hook.requests_sent
        result = collect_target(conn, hook, target, run, store=store)
        outcome.requests += hook.requests_sent - requests_before
        outcome.bars_collected += result.records_collected
        outcome.bars_inserted += result.bars_inserted
        outcome.bars_revised += result.bars_revised
        # A session with some bars is not absent: short of its schedule, it awaits IB's confirmation.
        have = sessions_with_bars(conn, tf, [row], first, last).get(row.id, set())
        absent = [day for day in gaps.missing if first <= day <= last and day not in have]
        if not absent:
            continue
        if absent[0] == gaps.missing[0] and not asked_head_timestamp:
            # Nothing at the start of the gaps: perhaps listed later. The head timestamp says when;
            # it is paced like small bars, so it is asked at most once.
            asked_head_timestamp = True
            first_available, head_timestamp_failed = _ask_first_available(conn, hook, row, target.contract())
        if head_timestamp_failed:
            log.warning(
                "%s: %d sessions without bars (%s..%s) are not recorded as no data: "
                "the head timestamp failed",
                row.symbol,
                len(absent),
                absent[0],
                absent[-1],
            )
            continue
        outcome.no_data_sessions += _record_no_data(conn, row, absent, first_available, run, tf)
    if not outcome.bars_collected:
        outcome.status = AttemptStatus.NO_DATA
    log.info(
        "%s: %d missing sessions in %s..%s: %d requests, %d bars (%d new, %d revised), "
        "%d sessions without data at IB",
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


def _fresh_gaps(
    conn: psycopg.Connection,
    row: SymbolRow,
    start: dt.date,
    end: dt.date,
    now: dt.datetime,
    recheck_no_data: bool = False,
    tf: Timeframe = DAILY,
) -> SymbolGaps:
    stored = stored_sessions(conn, tf, [row], start, end).get(row.id, set())
    no_data: set[dt.date] = (
        set()
        if recheck_no_data
        else repository.no_data_session_dates(conn, [row.id], tf.name, start, end).get(row.id, set())
    )
    first_available = repository.first_available_dates(conn, [row.id]).get(row.id)
    memberships = repository.membership_periods(conn, [row.id]).get(row.id, [])
    return symbol_gaps(
        row, start, end, now, stored, no_data, first_available, tf.max_request_days, memberships
    )


def _ask_first_available(
    conn: psycopg.Connection, hook: IbkrHook, row: SymbolRow, contract: ContractSpec
) -> tuple[dt.date | None, bool]:
    """Return IB's first available date for ``row`` (None: IB has none), and whether asking failed."""
    try:
        first_available = hook.head_timestamp(contract)
    except IbkrNoDataError:
        log.info("%s: IB has no head timestamp", row.symbol)
        return None, False
    except IbkrError as exc:
        log.warning("%s: head timestamp failed: %s", row.symbol, exc)
        return None, True
    repository.set_first_available_date(conn, row.id, first_available)
    conn.commit()
    log.info("%s: IB has data from %s (head timestamp)", row.symbol, first_available)
    return first_available, False


def _record_no_data(
    conn: psycopg.Connection,
    row: SymbolRow,
    sessions: Sequence[dt.date],
    first_available: dt.date | None,
    run: RunContext,
    tf: Timeframe = DAILY,
) -> int:
    before = [day for day in sessions if first_available is not None and day < first_available]
    after = [day for day in sessions if first_available is None or day >= first_available]
    if before:
        assert first_available is not None
        repository.record_no_data_sessions(
            conn, row.id, tf.name, before, before_first_available(first_available), run, confirmed=True
        )
    if after:
        repository.record_no_data_sessions(conn, row.id, tf.name, after, NO_DATA_FROM_IB, run)
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


def still_missing(
    conn: psycopg.Connection, request: BackfillRange, symbol_ids: Sequence[int], now: dt.datetime
) -> set[int]:
    """Return the symbols that still lack a session of the range: no bar, and no empty answer recorded.

    A backfill judges each symbol by all its windows: one never sent (its task died between two
    requests) leaves exactly such a session.
    """
    # A symbol delisted since the plan has no history left at IB: it is not missing anything.
    wanted = set(symbol_ids) - set(repository.last_sessions(conn, list(symbol_ids)))
    rows = [row for row in repository.select_symbols(conn, active_only=False) if row.id in wanted]
    no_data = repository.no_data_session_dates(
        conn, [row.id for row in rows], request.timeframe, request.start, request.end, settled_only=False
    )
    return {gaps.symbol_id for gaps in _gaps(conn, request, rows, now, no_data).with_gaps}


def summarize(
    request_data: BackfillRequestPayload | None,
    groups: Sequence[PlannedGroupPayload] | None,
    run: RunContext,
) -> dict[str, int]:
    """Return the run's counts per status and totals, after the data-quality checks over each symbol's range.

    :param request_data: the range ``validate`` returned; None when it failed.
    :param groups: the plan's groups; None when ``find_gaps`` failed.
    :param run: the run's identity.
    :raises PermanentError: naming the failed or unfinished symbols and the new data-quality errors,
        or the upstream task that failed.
    """
    if request_data is None:
        raise upstream_failed("Backfill", "validate")
    request = BackfillRange.from_dict(request_data)
    what = f"Backfill {request.start}..{request.end}"
    if groups is None:
        raise upstream_failed(what, "find_gaps")
    if request.dry_run:
        log.info("Dry run for %s..%s: nothing was requested or written", request.start, request.end)
        return {}
    with market_connection() as conn:
        gaps = cast(list[GapPayload], repository.planned_items(conn, run))
        totals = repository.run_backfill_totals(conn, run.dag_id, run.run_id)
    log.info(
        "%s: %d symbols with gaps; %d requests, %d bars, %d revised, %d sessions without data",
        what,
        len(gaps),
        totals["requests_sent"],
        totals["bars_collected"],
        totals["bars_revised"],
        totals["no_data_sessions"],
    )
    planned = {gap["symbol_id"]: gap["symbol"] for gap in gaps}
    now = _now(None)
    with market_connection() as conn:
        missing = still_missing(conn, request, list(planned), now)
        first_available = repository.first_available_dates(conn, list(planned))
        exchanges = {
            row.id: row.primary_exchange
            for row in repository.select_symbols(conn, active_only=False)
            if row.id in planned
        }
    # The data-quality checks look at daily bars.
    expected = {
        symbol_id: range_sessions(exchange, request, first_available.get(symbol_id), now)
        for symbol_id, exchange in exchanges.items()
        if not request.tf.intraday
    }
    report = summarize_run(
        what, run, planned, "symbols with gaps", still_missing=missing, expected_sessions=expected
    )
    return {**report.counts, **totals}


def range_sessions(
    exchange: str, request: BackfillRange, first_available: dt.date | None, now: dt.datetime
) -> list[dt.date]:
    """Return the closed sessions of ``exchange`` in the backfill's range, none before ``first_available``."""
    return [
        day
        for day in calendars.sessions_between(exchange, request.start, request.end)
        if (first_available is None or day >= first_available)
        and calendars.session_close(exchange, day) <= now
    ]
