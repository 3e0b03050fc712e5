"""Collecting one target: request its bars from IB and store them with their log row, atomically.

Airflow-agnostic: the DAG's task turns ``CollectionError`` into a retry or a final failure.
Each attempt is one ``collection_logs`` row: ``pending`` is committed first, so a worker that dies
mid-request leaves a visible trace; the bars and the final status commit in one transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import psycopg
from psycopg import Connection

from ibkr_market_data import repository
from ibkr_market_data.bars import Bar, latest_per_timestamp
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.daily_plan import ALREADY_COLLECTED, CollectionTarget, session_timestamp
from ibkr_market_data.errors import (
    BrokenBarsError,
    CollectionError,
    IbkrError,
    IbkrNoDataError,
    InvalidBarError,
)
from ibkr_market_data.repository import AttemptStatus, RunContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SymbolOutcome:
    symbol: str
    status: AttemptStatus  # completed, no_data, skipped or failed
    records_collected: int = 0
    bars_inserted: int = 0
    bars_revised: int = 0
    reason: str | None = None
    error_code: int | None = None


class BarSource(Protocol):
    """What collecting needs of the IBKR hook."""

    requests_sent: int

    def fetch_bars(
        self, spec: ContractSpec, end: dt.datetime | str, duration: str, bar_size: str
    ) -> list[Bar]: ...


#: Writes one symbol's bars: ``store(conn, symbol_id, timeframe, bars)``.
BarStore = Callable[[Connection, int, str, Sequence[Bar]], repository.UpsertResult]


def collect_target(
    conn: Connection,
    hook: BarSource,
    target: CollectionTarget,
    run: RunContext,
    store: BarStore | None = None,
    record_absent: bool = False,
) -> SymbolOutcome:
    """Fetch and store ``target``'s bars; returns the outcome or raises CollectionError.

    ``store`` writes the bars in the attempt's transaction; default ``repository.upsert_bars``,
    which records changed bars in ``bar_revisions``. ``record_absent``: sessions of the window IB
    sent no bar for are recorded in ``no_data_sessions`` (the daily run's; a backfill records its own
    after asking IB's head timestamp). A database error fails the attempt, recorded with its text,
    and is retryable.
    """
    attempt = _begin_attempt(conn, target, run)
    if isinstance(attempt, SymbolOutcome):
        return attempt
    requests_before = hook.requests_sent
    started = time.monotonic()
    fetched: list[Bar] | Exception
    try:
        fetched = hook.fetch_bars(target.contract(), target.end_date_time, target.duration, target.bar_size)
    except (IbkrError, InvalidBarError) as exc:
        fetched = exc
    return _finish_attempt(
        conn,
        target,
        run,
        attempt,
        fetched,
        requests_sent=hook.requests_sent - requests_before,
        request_seconds=time.monotonic() - started,
        store=store,
        record_absent=record_absent,
    )


class AsyncBarSource(Protocol):
    """What collecting a group concurrently needs of the IBKR hook."""

    async def fetch_bars_async(
        self, spec: ContractSpec, end: dt.datetime | str, duration: str, bar_size: str
    ) -> list[Bar]: ...

    def run_async(
        self, work: Callable[[], Awaitable[list[SymbolOutcome | BaseException]]]
    ) -> list[SymbolOutcome | BaseException]: ...


def collect_group(
    conn: Connection,
    hook: AsyncBarSource,
    targets: Sequence[CollectionTarget],
    run: RunContext,
    in_flight: int,
    label: str,
    record_absent: bool = True,
) -> list[SymbolOutcome]:
    """Collect ``targets`` concurrently over the hook's one connection, at most ``in_flight`` requests open.

    Each symbol is its own attempt (``collect_target_async``), judged against what the group's
    symbols had stored when this try began (one query for the group). Every symbol has its try before
    anything is raised: then CollectionError for the group, retryable when any failure is, naming
    each failed symbol. A retry plans again from the database: stored symbols send nothing.
    """
    stored = _stored_sessions(conn, targets)
    no_bars: dict[dt.date, int] = {}

    async def collect_all() -> list[SymbolOutcome | BaseException]:
        limit = asyncio.Semaphore(in_flight)

        async def one(target: CollectionTarget) -> SymbolOutcome:
            async with limit:
                return await collect_target_async(
                    conn,
                    hook,
                    target,
                    run,
                    record_absent,
                    stored.get((target.symbol_id, target.timeframe.name), no_bars),
                )

        return await asyncio.gather(*(one(target) for target in targets), return_exceptions=True)

    results = hook.run_async(collect_all)
    outcomes = [result for result in results if isinstance(result, SymbolOutcome)]
    failures = [result for result in results if isinstance(result, CollectionError)]
    unexpected = [
        result for result in results if isinstance(result, BaseException) and result not in failures
    ]
    if unexpected:
        # Not a symbol's IB or bar failure (the database went away): the next try decides.
        raise unexpected[0]
    if failures:
        reasons = "; ".join(f"{failure.outcome.symbol}: {failure.outcome.reason}" for failure in failures)
        raise CollectionError(
            SymbolOutcome(
                label,
                AttemptStatus.FAILED,
                reason=f"{len(failures)} of {len(targets)} symbols failed: {reasons}",
            ),
            retryable=any(failure.retryable for failure in failures),
        )
    return outcomes


async def collect_target_async(
    conn: Connection,
    hook: AsyncBarSource,
    target: CollectionTarget,
    run: RunContext,
    record_absent: bool = False,
    stored: Mapping[dt.date, int] | None = None,
) -> SymbolOutcome:
    """``collect_target`` with the request awaited, so several symbols share one connection.

    ``stored``: the target's bars already stored per session, when the caller read them (else this reads them).
    The database work before and after the request runs without a pause and ends in a commit or
    rollback, so attempts interleaved on one psycopg connection never share a transaction.
    """
    attempt = _begin_attempt(conn, target, run, stored)
    if isinstance(attempt, SymbolOutcome):
        return attempt
    started = time.monotonic()
    fetched: list[Bar] | Exception
    try:
        fetched = await hook.fetch_bars_async(
            target.contract(), target.end_date_time, target.duration, target.bar_size
        )
    except (IbkrError, InvalidBarError) as exc:
        fetched = exc
    return _finish_attempt(
        conn,
        target,
        run,
        attempt,
        fetched,
        requests_sent=1,
        request_seconds=time.monotonic() - started,
        store=None,
        record_absent=record_absent,
    )


def _begin_attempt(
    conn: Connection, target: CollectionTarget, run: RunContext, stored: Mapping[dt.date, int] | None = None
) -> int | SymbolOutcome:
    """Commit the attempt's ``pending`` row; its id, or the ``skipped`` outcome when nothing is missing any more."""
    timeframe = target.timeframe.name
    window = (session_timestamp(target.first_session_date), session_timestamp(target.session_date))
    log_id = repository.start_attempt(conn, run, target.symbol_id, timeframe, *window)
    conn.commit()
    missing = _missing_sessions(conn, target, timeframe, stored)
    conn.commit()  # end the read: the next statement on this connection may be another attempt's
    if missing:
        return log_id
    # Another run (or this task's earlier try) stored it since this run was planned: send nothing.
    repository.finish_attempt(conn, log_id, AttemptStatus.SKIPPED, error_message=ALREADY_COLLECTED)
    conn.commit()
    log.info("%s %s: skipped, %s", target.label, target.session, ALREADY_COLLECTED)
    return SymbolOutcome(target.label, AttemptStatus.SKIPPED, reason=ALREADY_COLLECTED)


def _finish_attempt(
    conn: Connection,
    target: CollectionTarget,
    run: RunContext,
    log_id: int,
    fetched: list[Bar] | Exception,
    *,
    requests_sent: int,
    request_seconds: float,
    store: BarStore | None,
    record_absent: bool,
) -> SymbolOutcome:
    """Store what the request brought and the attempt's outcome in one transaction; raise CollectionError on failure."""
    timeframe = target.timeframe.name
    first, last = target.first_session_date, target.session_date
    broken: BrokenBarsError | None = None
    if isinstance(fetched, BrokenBarsError) and fetched.valid:
        # Keep the good bars of a bad response; the attempt still fails, naming the broken ones.
        broken, fetched = fetched, fetched.valid
    try:
        if isinstance(fetched, Exception):
            raise fetched
        in_window = [bar for bar in fetched if first <= target.session_of(bar) <= last]
        if not in_window:
            raise IbkrNoDataError(f"IB sent {len(fetched)} bars, none for {first}..{last}")
        wanted = latest_per_timestamp(in_window)
        if len(wanted) < len(in_window):
            log.warning(
                "%s %s: dropped %d duplicate bars (IB sent a time twice); the last of each is stored",
                target.label,
                last,
                len(in_window) - len(wanted),
            )
        if store is None:
            result = repository.upsert_bars(conn, target.symbol_id, timeframe, wanted, run)
        else:
            result = store(conn, target.symbol_id, timeframe, wanted)
        if broken is not None:
            raise _PartlyStored(len(wanted), result, broken)
        if record_absent:
            _record_absent(conn, target, timeframe, {target.session_of(bar) for bar in wanted}, run)
        repository.finish_attempt(
            conn,
            log_id,
            AttemptStatus.COMPLETED,
            records_collected=len(wanted),
            requests_sent=requests_sent,
        )
        repository.record_request_seconds(conn, log_id, request_seconds)
        conn.commit()
    except _PartlyStored as partly:
        repository.finish_attempt(
            conn,
            log_id,
            AttemptStatus.FAILED,
            records_collected=partly.stored,
            requests_sent=requests_sent,
            error_message=f"{partly.stored} good bars stored; {partly.broken}",
        )
        repository.record_request_seconds(conn, log_id, request_seconds)
        conn.commit()
        log.warning(
            "%s %s: stored %d good bars, failed: %s", target.label, last, partly.stored, partly.broken
        )
        raise CollectionError(
            SymbolOutcome(
                target.label,
                AttemptStatus.FAILED,
                records_collected=partly.stored,
                bars_inserted=partly.result.inserted,
                bars_revised=partly.result.revised,
                reason=str(partly.broken),
            ),
            retryable=False,
        ) from partly.broken
    except IbkrNoDataError as exc:
        conn.rollback()
        outcome = SymbolOutcome(target.label, AttemptStatus.NO_DATA, reason=str(exc), error_code=exc.code)
        repository.finish_attempt(
            conn,
            log_id,
            AttemptStatus.NO_DATA,
            requests_sent=requests_sent,
            error_message=exc.reason,
            error_code=exc.code,
        )
        repository.record_request_seconds(conn, log_id, request_seconds)
        if record_absent:
            _record_absent(conn, target, timeframe, set(), run)
        conn.commit()
        log.info("%s %s: no data from IB (%s)", target.label, last, exc.reason)
        return outcome
    except (IbkrError, InvalidBarError, psycopg.Error) as exc:
        code = exc.code if isinstance(exc, IbkrError) else None
        # A database error may be passing (a lost connection, a deadlock): the next try decides.
        retryable = isinstance(exc, psycopg.Error) or (isinstance(exc, IbkrError) and exc.retryable)
        _record_failure(conn, log_id, exc, code, requests_sent, request_seconds)
        log.warning("%s %s: failed (%s): %s", target.label, last, "will retry" if retryable else "final", exc)
        raise CollectionError(
            SymbolOutcome(target.label, AttemptStatus.FAILED, reason=str(exc), error_code=code), retryable
        ) from exc
    log.info(
        "%s %s: collected %d bars (%d new, %d revised)",
        target.label,
        last,
        len(wanted),
        result.inserted,
        result.revised,
    )
    return SymbolOutcome(
        target.label,
        AttemptStatus.COMPLETED,
        records_collected=len(wanted),
        bars_inserted=result.inserted,
        bars_revised=result.revised,
    )


class _PartlyStored(Exception):
    """The good bars of a response with broken ones are written; the attempt fails naming the broken."""

    def __init__(self, stored: int, result: repository.UpsertResult, broken: BrokenBarsError) -> None:
        super().__init__(str(broken))
        self.stored, self.result, self.broken = stored, result, broken


def _missing_sessions(
    conn: Connection, target: CollectionTarget, timeframe: str, stored: Mapping[dt.date, int] | None = None
) -> list[dt.date]:
    """The sessions of ``target`` whose bars are not all stored yet (``stored``: bars per session, if known).

    Daily: a session is stored with its bar; intraday: with as many bars as its schedule holds.

    A target that does not name its sessions (a backfill window: planned afresh from the database
    by its task just before) counts as missing whole: it is always sent.
    """
    first, last = target.first_session_date, target.session_date
    sessions = target.session_dates
    if sessions is None:
        return [first, last]
    if stored is None:
        stored = _stored_sessions(conn, [target]).get((target.symbol_id, timeframe), {})
    complete = target.complete_sessions(stored)
    return [day for day in sessions if day not in complete]


def _stored_sessions(
    conn: Connection, targets: Sequence[CollectionTarget]
) -> dict[tuple[int, str], dict[dt.date, int]]:
    """Per (symbol id, timeframe) of ``targets``, the bars stored per session of their windows: one query per timeframe."""
    stored: dict[tuple[int, str], dict[dt.date, int]] = {}
    for timeframe, group in _by_timeframe(targets).items():
        first = min(target.first_session_date for target in group)
        last = max(target.session_date for target in group)
        if group[0].time_zone:
            zones = {target.symbol_id: target.time_zone for target in group}
            counts = repository.session_bar_counts(conn, zones, timeframe, first, last)
        else:
            dates = repository.existing_bar_dates(
                conn, [target.symbol_id for target in group], timeframe, first, last
            )
            counts = {symbol_id: dict.fromkeys(days, 1) for symbol_id, days in dates.items()}
        stored |= {(symbol_id, timeframe): sessions for symbol_id, sessions in counts.items()}
    conn.commit()
    return stored


def _by_timeframe(targets: Sequence[CollectionTarget]) -> dict[str, list[CollectionTarget]]:
    groups: dict[str, list[CollectionTarget]] = {}
    for target in targets:
        groups.setdefault(target.timeframe.name, []).append(target)
    return groups


def _record_absent(
    conn: Connection, target: CollectionTarget, timeframe: str, received: set[dt.date], run: RunContext
) -> None:
    """Record the window's sessions that IB sent no bar for and that have none stored."""
    from ibkr_market_data.backfill_plan import NO_DATA_FROM_IB

    if target.session_dates is not None and received.issuperset(target.session_dates):
        return  # a bar for every session: nothing can be absent (and nothing to ask the database)
    absent = [day for day in _missing_sessions(conn, target, timeframe) if day not in received]
    if absent:
        repository.record_no_data_sessions(conn, target.symbol_id, timeframe, absent, NO_DATA_FROM_IB, run)
        log.info("%s: IB sent no bar for %s", target.label, ", ".join(map(str, absent)))


def _record_failure(
    conn: Connection,
    log_id: int,
    exc: Exception,
    code: int | None,
    requests_sent: int,
    request_seconds: float,
) -> None:
    """Mark the attempt ``failed`` in a fresh transaction, the failed one rolled back.

    Where the database cannot take even that (the connection is gone), the attempt stays
    ``pending`` and the caller still raises the error that failed it, not this one.
    """
    try:
        conn.rollback()
        repository.finish_attempt(
            conn,
            log_id,
            AttemptStatus.FAILED,
            requests_sent=requests_sent,
            error_message=str(exc),
            error_code=code,
        )
        repository.record_request_seconds(conn, log_id, request_seconds)
        conn.commit()
    except psycopg.Error as recording_error:
        log.error(
            "Attempt %s stays pending: the database refused to record its failure: %s",
            log_id,
            recording_error,
        )
