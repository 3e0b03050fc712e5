"""Collecting one target: request its bars from IB and store them with their log row, atomically.

Airflow-agnostic: the DAG's task turns ``CollectionFailed`` into a retry or a final failure.
Each attempt is one ``collection_logs`` row: ``pending`` is committed first, so a worker that dies
mid-request leaves a visible trace; the bars and the final status commit in one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import psycopg
from psycopg import Connection

from ibkr_market_data import calendars, repository
from ibkr_market_data.bars import TIMEFRAME_BY_BAR_SIZE, Bar, InvalidBarError, latest_per_timestamp
from ibkr_market_data.contracts import ContractSpec
from ibkr_market_data.errors import IbkrError, IbkrNoDataError
from ibkr_market_data.planning import ALREADY_COLLECTED, CollectionTarget, session_timestamp
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


class CollectionFailed(Exception):
    """The symbol failed; ``retryable`` says whether another try may succeed."""

    def __init__(self, outcome: SymbolOutcome, retryable: bool) -> None:
        super().__init__(f"{outcome.symbol}: {outcome.reason}")
        self.outcome = outcome
        self.retryable = retryable


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
    """Fetch and store ``target``'s bars; returns the outcome or raises CollectionFailed.

    ``store`` writes the bars in the attempt's transaction; default ``repository.upsert_bars``,
    which records changed bars in ``bar_revisions``. ``record_absent``: sessions of the window IB
    sent no bar for are recorded in ``no_data_sessions`` (the daily run's; a backfill records its own
    after asking IB's head timestamp). A database error fails the attempt, recorded with its text,
    and is retryable.
    """
    timeframe = TIMEFRAME_BY_BAR_SIZE[target.bar_size]
    first, last = target.first_session_date, target.session_date
    window = (session_timestamp(first), session_timestamp(last))
    log_id = repository.start_attempt(conn, run, target.symbol_id, timeframe, *window)
    conn.commit()

    if not _missing_sessions(conn, target, timeframe):
        # Another run stored it since this run was planned: send nothing.
        repository.finish_attempt(conn, log_id, AttemptStatus.SKIPPED, error_message=ALREADY_COLLECTED)
        conn.commit()
        log.info("%s %s: skipped, %s", target.symbol, last, ALREADY_COLLECTED)
        return SymbolOutcome(target.symbol, AttemptStatus.SKIPPED, reason=ALREADY_COLLECTED)

    requests_before = hook.requests_sent
    request_started = time.monotonic()
    try:
        bars = hook.fetch_bars(target.contract(), target.end_date_time, target.duration, target.bar_size)
        request_seconds = time.monotonic() - request_started
        in_window = [bar for bar in bars if first <= bar.session_date <= last]
        if not in_window:
            raise IbkrNoDataError(f"IB sent {len(bars)} bars, none for {first}..{last}")
        wanted = latest_per_timestamp(in_window)
        if len(wanted) < len(in_window):
            log.warning(
                "%s %s: dropped %d duplicate bars (IB sent a time twice); the last of each is stored",
                target.symbol,
                last,
                len(in_window) - len(wanted),
            )
        if store is None:
            result = repository.upsert_bars(conn, target.symbol_id, timeframe, wanted, run)
        else:
            result = store(conn, target.symbol_id, timeframe, wanted)
        if record_absent:
            _record_absent(conn, target, timeframe, {bar.session_date for bar in wanted}, run)
        repository.finish_attempt(
            conn,
            log_id,
            AttemptStatus.COMPLETED,
            records_collected=len(wanted),
            requests_sent=hook.requests_sent - requests_before,
        )
        repository.record_request_seconds(conn, log_id, request_seconds)
        conn.commit()
    except IbkrNoDataError as exc:
        conn.rollback()
        outcome = SymbolOutcome(target.symbol, AttemptStatus.NO_DATA, reason=str(exc), error_code=exc.code)
        repository.finish_attempt(
            conn,
            log_id,
            AttemptStatus.NO_DATA,
            requests_sent=hook.requests_sent - requests_before,
            error_message=exc.reason,
            error_code=exc.code,
        )
        repository.record_request_seconds(conn, log_id, time.monotonic() - request_started)
        if record_absent:
            _record_absent(conn, target, timeframe, set(), run)
        conn.commit()
        log.info("%s %s: no data from IB (%s)", target.symbol, last, exc.reason)
        return outcome
    except (IbkrError, InvalidBarError, psycopg.Error) as exc:
        code = exc.code if isinstance(exc, IbkrError) else None
        # A database error may be passing (a lost connection, a deadlock): the next try decides.
        retryable = isinstance(exc, psycopg.Error) or (isinstance(exc, IbkrError) and exc.retryable)
        _record_failure(
            conn, log_id, exc, code, hook.requests_sent - requests_before, time.monotonic() - request_started
        )
        log.warning(
            "%s %s: failed (%s): %s", target.symbol, last, "will retry" if retryable else "final", exc
        )
        raise CollectionFailed(
            SymbolOutcome(target.symbol, AttemptStatus.FAILED, reason=str(exc), error_code=code), retryable
        ) from exc
    log.info(
        "%s %s: collected %d bars (%d new, %d revised)",
        target.symbol,
        last,
        len(wanted),
        result.inserted,
        result.revised,
    )
    return SymbolOutcome(
        target.symbol,
        AttemptStatus.COMPLETED,
        records_collected=len(wanted),
        bars_inserted=result.inserted,
        bars_revised=result.revised,
    )


def _missing_sessions(conn: Connection, target: CollectionTarget, timeframe: str) -> list[dt.date]:
    """The sessions of ``target``'s window that have no stored bar yet (every one of them if its exchange has no calendar)."""
    first, last = target.first_session_date, target.session_date
    try:
        sessions = calendars.sessions_between(target.primary_exchange, first, last)
    except calendars.UnknownExchangeError:
        sessions = [first, last]
    stored = repository.existing_bar_dates(conn, [target.symbol_id], timeframe, first, last)
    have = stored.get(target.symbol_id, set())
    return [day for day in sessions if day not in have]


def _record_absent(
    conn: Connection, target: CollectionTarget, timeframe: str, received: set[dt.date], run: RunContext
) -> None:
    """Record the window's sessions that IB sent no bar for and that have none stored."""
    from ibkr_market_data.backfill import NO_DATA_FROM_IB

    absent = [day for day in _missing_sessions(conn, target, timeframe) if day not in received]
    if absent:
        repository.record_no_data_sessions(conn, target.symbol_id, timeframe, absent, NO_DATA_FROM_IB, run)
        log.info("%s: IB sent no bar for %s", target.symbol, ", ".join(map(str, absent)))


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
