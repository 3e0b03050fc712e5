"""One attempt at one target: request its bars from IB, then store them and the attempt's outcome.

Airflow-agnostic: the task turns ``CollectionError`` into a retry or a final failure. Each attempt
is a ``collection_logs`` row, committed ``pending`` before the request. See docs/daily-dag.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import psycopg
from psycopg import Connection

from ibkr_market_data import repository
from ibkr_market_data.bars import DAILY_TIMEFRAME, Bar, adds_up_to, latest_per_timestamp
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
from ibkr_market_data.timeframes import ONE_MINUTE

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds the daily run waits before asking IB once more after a 162 "no data"; ``off``: never.
NO_DATA_REASK_VARIABLE = "IBKR_NO_DATA_REASK_SECONDS"
DEFAULT_NO_DATA_REASK_SECONDS = 5.0


def no_data_reask_seconds(environ: Mapping[str, str] = os.environ) -> float | None:
    """Return the pause before the daily run asks IB again after a 162 "no data", or None when off.

    A malformed value logs a warning and keeps the default: a typo must not turn the re-ask off.
    """
    raw = environ.get(NO_DATA_REASK_VARIABLE, "").strip().lower()
    if not raw:
        return DEFAULT_NO_DATA_REASK_SECONDS
    if raw == "off":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 600:
        log.warning(
            "%s=%r is not a number of seconds from 0 to 600 or 'off'; using %g",
            NO_DATA_REASK_VARIABLE,
            raw,
            DEFAULT_NO_DATA_REASK_SECONDS,
        )
        return DEFAULT_NO_DATA_REASK_SECONDS
    return seconds


@dataclass(frozen=True)
class SymbolOutcome:
    """What one attempt (or a skip) did for one symbol; ``status`` is an ``AttemptStatus``."""

    symbol: str
    status: AttemptStatus
    records_collected: int = 0
    bars_inserted: int = 0
    bars_revised: int = 0
    reason: str | None = None
    error_code: int | None = None


class BarSource(Protocol):
    """What an attempt needs of the IBKR hook."""

    requests_sent: int

    async def fetch_bars_async(
        self, spec: ContractSpec, end: dt.datetime | str, duration: str, bar_size: str
    ) -> list[Bar]:
        """Return the bars of ``bar_size`` covering ``duration`` up to ``end``."""

    def run_async(self, work: Callable[[], Awaitable[T]], concurrent: bool = True) -> T:
        """Run ``work()`` in the client's event loop."""


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
    """Collect ``target`` alone, blocking: run ``collect_target_async`` in the hook's event loop.

    :param conn: the task's market-data connection; the attempt commits on it.
    :param hook: connects when needed and waits for the pacer, as for a blocking request.
    :param target: the symbol, timeframe and sessions to request.
    :param run: the run and try the attempt belongs to.
    :param store: writes the bars in the attempt's transaction; default ``repository.upsert_bars``,
        which records changed bars in ``bar_revisions``.
    :param record_absent: record in ``no_data_sessions`` the window's sessions IB sent no bar for
        (the daily run's; a backfill records its own after asking IB's head timestamp).
    :raises CollectionError: the attempt failed, recorded; ``retryable`` says whether a retry may help.
    """
    return hook.run_async(
        lambda: collect_target_async(conn, hook, target, run, record_absent, store=store), concurrent=False
    )


def collect_group(
    conn: Connection,
    hook: BarSource,
    targets: Sequence[CollectionTarget],
    run: RunContext,
    in_flight: int,
    label: str,
    record_absent: bool = True,
) -> list[SymbolOutcome]:
    """Collect ``targets`` concurrently over the hook's one connection, ``in_flight`` requests at most.

    Each symbol is its own attempt, judged against what the group had stored when this try began (one
    query). Every symbol has its try before anything is raised; a retry plans again from the database.

    :raises CollectionError: naming each failed symbol; retryable when any failure is.
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
                    in_flight_slot=limit,
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
    hook: BarSource,
    target: CollectionTarget,
    run: RunContext,
    record_absent: bool = False,
    stored: Mapping[dt.date, int] | None = None,
    store: BarStore | None = None,
    in_flight_slot: asyncio.Semaphore | None = None,
) -> SymbolOutcome:
    """Collect ``target``: commit its ``pending`` row, await its request, then store the outcome.

    The database work before and after the request runs without a pause and ends in a commit or
    rollback, so attempts interleaved on one psycopg connection never share a transaction. When
    ``record_absent`` and IB answers 162 "no data", IB is asked once more after a pause
    (``IBKR_NO_DATA_REASK_SECONDS``): a passing 162 must not leave the run green with its bars
    missing. An answer whose newest session is short and unexplained (IB ended it before its newest
    bars) is asked once more at once, and both answers are stored. See docs/ib-behaviours.md.

    :param stored: the target's bars already stored per session, when the caller read them.
    :param in_flight_slot: the group's slot this attempt holds; given back during the pause.
    :raises CollectionError: as ``collect_target``.
    """
    attempt = _begin_attempt(conn, target, run, stored)
    if isinstance(attempt, SymbolOutcome):
        return attempt
    fetched, requests_sent, request_seconds = await _request(hook, target)
    if record_absent and isinstance(fetched, IbkrNoDataError):
        pause = _reask_pause(conn, target, run)
        if pause is not None:
            log.info(
                "%s %s: no data from IB (%s); asking again in %g s, once",
                target.label,
                target.session,
                fetched.reason,
                pause,
            )
            await _pause(pause, in_flight_slot)
            fetched, sent_again, seconds_again = await _request(hook, target)
            requests_sent += sent_again
            request_seconds += seconds_again
    elif record_absent and isinstance(fetched, list) and (short := _short_tail(conn, target, run, fetched)):
        # IB ended the answer before its newest bars (a split answer): they come with the next one.
        log.info("%s %s: %s; asking IB again at once, once", target.label, target.session, short)
        again, sent_again, seconds_again = await _request(hook, target)
        requests_sent += sent_again
        request_seconds += seconds_again
        fetched = _union(fetched, again, target)
    decision, result = _write_outcome(
        conn,
        target,
        run,
        attempt,
        _decide(target, fetched),
        requests_sent=requests_sent,
        request_seconds=request_seconds,
        store=store,
        record_absent=record_absent,
    )
    return _conclude(target, decision, result)


async def _request(hook: BarSource, target: CollectionTarget) -> tuple[list[Bar] | Exception, int, float]:
    """Send the target's request; return IB's answer (or its error), the requests sent and seconds taken."""
    sent_before = hook.requests_sent
    started = time.monotonic()
    fetched: list[Bar] | Exception
    try:
        fetched = await hook.fetch_bars_async(
            target.contract(), target.end_date_time, target.duration, target.bar_size
        )
    except (IbkrError, InvalidBarError) as exc:
        fetched = exc
    # Other attempts of a group count theirs meanwhile; this one sent its request or none.
    return fetched, min(hook.requests_sent - sent_before, 1), time.monotonic() - started


def _reask_pause(conn: Connection, target: CollectionTarget, run: RunContext) -> float | None:
    """Return the pause before asking IB again after a 162 "no data", or None to accept the answer.

    One re-ask per target and run: none when re-asking is off, or when an earlier try of this run
    already recorded no data for the target's sessions (it asked twice then).
    """
    pause = no_data_reask_seconds()
    if pause is None:
        return None
    try:
        recorded = repository.no_data_recorded_by_run(
            conn, target.symbol_id, target.timeframe.name, target.first_session_date, target.session_date, run
        )
        conn.commit()  # end the read: the next statement on this connection may be another attempt's
    except psycopg.Error as exc:
        # Asking again costs one request; writing the outcome then meets the database's trouble.
        log.warning("%s: cannot read this run's no-data records (%s); asking IB again", target.label, exc)
        return pause
    return None if recorded else pause


def _short_tail(
    conn: Connection, target: CollectionTarget, run: RunContext, bars: Sequence[Bar]
) -> str | None:
    """Return how the answer's tail is short, or None when its newest session is whole or explained.

    Short: a daily answer without the newest session's bar, or an intraday one whose newest session
    stops before its scheduled close without adding up to its stored daily bar (a halt or quiet
    minutes inside the session, or at its close when the daily bar says so, are not asked again).
    None too when an earlier try of this run already recorded the tail short: it asked twice then.
    """
    newest = target.session_date
    answered = latest_per_timestamp([bar for bar in bars if target.session_of(bar) == newest])
    try:
        if not target.time_zone:
            short = None if answered else f"IB's answer holds no bar for {newest}"
        else:
            short = _short_intraday_tail(conn, target, answered)
        if short is None:
            return None
        timeframe = target.timeframe.name
        asked = repository.no_data_recorded_by_run(
            conn, target.symbol_id, timeframe, newest, newest, run
        ) or repository.short_session_recorded_by_run(conn, target.symbol_id, timeframe, newest, run)
        conn.commit()  # end the read: the next statement on this connection may be another attempt's
    except psycopg.Error as exc:
        # Asking again costs one request; writing the outcome then meets the database's trouble.
        log.warning("%s: cannot read the stored daily bar or this run's records (%s)", target.label, exc)
        return f"IB's answer for {newest} may be short"
    return None if asked else short


def _short_intraday_tail(conn: Connection, target: CollectionTarget, answered: Sequence[Bar]) -> str | None:
    """Return how the newest intraday session stops short of its close, or None if whole or explained.

    The close comes with the target from the plan: a collect task builds no exchange calendar. A
    target planned without it (by an older release) is held against its daily bar alone.
    """
    newest = target.session_date
    scheduled = dict(zip(target.sessions, target.expected_bars, strict=False)).get(newest.isoformat(), 0)
    if len(answered) >= scheduled:
        return None  # whole, or a window without a schedule (a backfill's): nothing to hold it against
    bar_seconds = dt.timedelta(seconds=target.timeframe.bar_seconds or 0)
    close = target.newest_close
    last_end = max((bar.timestamp + bar_seconds for bar in answered), default=None)
    if last_end is not None and close is not None and last_end >= close:
        return None  # the close is there: what is missing is inside the session (a halt, quiet minutes)
    daily = repository.bars_by_session(conn, target.symbol_id, DAILY_TIMEFRAME, newest, newest).get(newest)
    conn.commit()  # end the read: the next statement on this connection may be another attempt's
    if adds_up_to(answered, daily):
        return None  # the daily bar explains the quiet close
    ends = f"ending {last_end:%H:%M} UTC" if last_end else "none"
    closes = f", the close {close:%H:%M} UTC" if close else ""
    return f"{len(answered)} of {scheduled} bars of {newest} ({ends}{closes})"


def _union(first: list[Bar], again: list[Bar] | Exception, target: CollectionTarget) -> list[Bar]:
    """Return the bars of both answers, the second's where both hold a time; the first if it failed."""
    if isinstance(again, Exception):
        log.info(
            "%s %s: asked again, IB answered %s; the first answer stands", target.label, target.session, again
        )
        return first
    times = {bar.timestamp for bar in again}
    return [*(bar for bar in first if bar.timestamp not in times), *again]


async def _pause(seconds: float, in_flight_slot: asyncio.Semaphore | None) -> None:
    """Wait ``seconds`` without holding the group's in-flight slot: its other symbols go on meanwhile."""
    if in_flight_slot is None:
        await asyncio.sleep(seconds)
        return
    in_flight_slot.release()
    try:
        await asyncio.sleep(seconds)
    finally:
        await in_flight_slot.acquire()


def _begin_attempt(
    conn: Connection, target: CollectionTarget, run: RunContext, stored: Mapping[dt.date, int] | None = None
) -> int | SymbolOutcome:
    """Commit the attempt's ``pending`` row; return its id, or ``skipped`` when nothing is missing now."""
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


@dataclass(frozen=True)
class _Decision:
    """An attempt's outcome, decided before anything is written: the bars to store and the failure."""

    bars: Sequence[Bar] = ()
    error: Exception | None = None

    @property
    def status(self) -> AttemptStatus:
        if self.error is None:
            return AttemptStatus.COMPLETED
        if isinstance(self.error, IbkrNoDataError):
            return AttemptStatus.NO_DATA
        return AttemptStatus.FAILED

    @property
    def error_code(self) -> int | None:
        return self.error.code if isinstance(self.error, IbkrError) else None

    @property
    def message(self) -> str | None:
        """Return the attempt's ``error_message``: why IB had no data, or why it failed."""
        error = self.error
        if error is None:
            return None
        if isinstance(error, IbkrNoDataError):
            return error.reason
        if self.bars:
            return f"{len(self.bars)} good bars stored; {error}"
        return str(error)

    @property
    def retryable(self) -> bool:
        # A database error may be passing (a lost connection, a deadlock): the next try decides.
        error = self.error
        return isinstance(error, psycopg.Error) or (isinstance(error, IbkrError) and error.retryable)


_NOTHING_STORED = repository.UpsertResult(inserted=0, revised=0)


def _decide(target: CollectionTarget, fetched: list[Bar] | Exception) -> _Decision:
    """Decide what the request's answer makes of the attempt: the bars to store, and its failure if any."""
    broken: BrokenBarsError | None = None
    if isinstance(fetched, BrokenBarsError) and fetched.valid:
        # Keep the good bars of a bad response; the attempt still fails, naming the broken ones.
        broken, fetched = fetched, fetched.valid
    if isinstance(fetched, Exception):
        return _Decision(error=fetched)
    first, last = target.first_session_date, target.session_date
    in_window = [bar for bar in fetched if first <= target.session_of(bar) <= last]
    if not in_window:
        return _Decision(error=IbkrNoDataError(f"IB sent {len(fetched)} bars, none for {first}..{last}"))
    # IB can send a bar twice, or out of order: store each time once, oldest first.
    wanted = sorted(latest_per_timestamp(in_window), key=lambda bar: bar.timestamp)
    if len(wanted) < len(in_window):
        log.warning(
            "%s %s: dropped %d duplicate bars (IB sent a time twice); the last of each is stored",
            target.label,
            last,
            len(in_window) - len(wanted),
        )
    return _Decision(wanted, broken)


def _write_outcome(
    conn: Connection,
    target: CollectionTarget,
    run: RunContext,
    log_id: int,
    decision: _Decision,
    *,
    requests_sent: int,
    request_seconds: float,
    store: BarStore | None,
    record_absent: bool,
) -> tuple[_Decision, repository.UpsertResult]:
    """Write the decision's bars and the attempt's outcome in one transaction; return what was written.

    A database error fails the attempt, and that failure is written instead. When even a failure is
    refused (the connection is gone), the attempt stays ``pending``.
    """
    timeframe = target.timeframe.name
    try:
        conn.rollback()  # nothing of the attempt is in the transaction; a failed statement aborted it
        result = _NOTHING_STORED
        if decision.bars and store is not None:
            result = store(conn, target.symbol_id, timeframe, decision.bars)
        elif decision.bars:
            result = repository.upsert_bars(
                conn, target.symbol_id, timeframe, decision.bars, run, target.time_zone
            )
        if decision.bars and target.derive:
            store_derived_sessions(conn, target, {target.session_of(bar) for bar in decision.bars}, run)
        if record_absent and decision.status != AttemptStatus.FAILED:
            _record_absent(conn, target, timeframe, {target.session_of(bar) for bar in decision.bars}, run)
        if target.expected_bars and decision.status == AttemptStatus.COMPLETED:
            _record_short_sessions(conn, target, timeframe, decision.bars, run)
        repository.finish_attempt(
            conn,
            log_id,
            decision.status,
            records_collected=len(decision.bars),
            requests_sent=requests_sent,
            error_message=decision.message,
            error_code=decision.error_code,
        )
        repository.record_request_seconds(conn, log_id, request_seconds)
        conn.commit()
    except psycopg.Error as exc:
        if decision.status == AttemptStatus.FAILED and not decision.bars:
            log.error("Attempt %s stays pending: the database refused to record its failure: %s", log_id, exc)
            return decision, _NOTHING_STORED
        return _write_outcome(
            conn,
            target,
            run,
            log_id,
            _Decision(error=exc),
            requests_sent=requests_sent,
            request_seconds=request_seconds,
            store=store,
            record_absent=record_absent,
        )
    return decision, result


def store_derived_sessions(
    conn: Connection, target: CollectionTarget, sessions: set[dt.date], run: RunContext | None
) -> dict[str, int]:
    """Build ``target.derive``'s bars of ``sessions`` from their stored 1-minute bars and upsert them.

    In the caller's transaction, after the minutes are written: the derived bars follow the stored
    minutes, whichever answer brought them. Return the bars written (new or revised) per timeframe.
    """
    from ibkr_market_data import derived
    from ibkr_market_data.timeframes import timeframe

    opens = dict(zip(target.sessions, target.session_opens, strict=False))
    written: dict[str, int] = {}
    for day in sorted(sessions):
        session_open = opens.get(day.isoformat())
        if session_open is None:
            continue  # a target planned without its opens (a plan from before derivation) derives nothing
        minutes = repository.session_bars(conn, target.symbol_id, ONE_MINUTE.name, day, target.time_zone)
        for name in target.derive:
            bars = derived.aggregate(
                minutes, timeframe(name), target.time_zone, dt.datetime.fromisoformat(session_open)
            )
            result = repository.upsert_bars(conn, target.symbol_id, name, bars, run, target.time_zone)
            written[name] = written.get(name, 0) + result.inserted + result.revised
    if sessions and written:
        log.info(
            "%s %s: built %s from the stored 1-minute bars (%s bars written)",
            target.symbol,
            target.session,
            " and ".join(target.derive),
            ", ".join(f"{count} {name}" for name, count in written.items()),
        )
    return written


def _conclude(
    target: CollectionTarget, decision: _Decision, result: repository.UpsertResult
) -> SymbolOutcome:
    """Log the written outcome and return it; raise CollectionError when the attempt failed."""
    last, error = target.session_date, decision.error
    outcome = SymbolOutcome(
        target.label,
        decision.status,
        records_collected=len(decision.bars),
        bars_inserted=result.inserted,
        bars_revised=result.revised,
        reason=None if error is None else str(error),
        error_code=decision.error_code,
    )
    if error is None:
        log.info(
            "%s %s: collected %d bars (%d new, %d revised)",
            target.label,
            last,
            len(decision.bars),
            result.inserted,
            result.revised,
        )
        return outcome
    if isinstance(error, IbkrNoDataError):
        log.info("%s %s: no data from IB (%s)", target.label, last, error.reason)
        return outcome
    if decision.bars:
        log.warning("%s %s: stored %d good bars, failed: %s", target.label, last, len(decision.bars), error)
    else:
        retry = "will retry" if decision.retryable else "final"
        log.warning("%s %s: failed (%s): %s", target.label, last, retry, error)
    raise CollectionError(outcome, decision.retryable) from error


def _missing_sessions(
    conn: Connection, target: CollectionTarget, timeframe: str, stored: Mapping[dt.date, int] | None = None
) -> list[dt.date]:
    """Return the sessions of ``target`` whose bars are not all stored yet.

    Daily: a session is stored with its bar; intraday: with as many bars as its schedule holds. A
    target that does not name its sessions (a backfill window, planned afresh) is missing whole.
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
    """Return the bars stored per session of each target's window, keyed by (symbol id, timeframe).

    One query per timeframe.
    """
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
    """Record the window's sessions that IB sent no bar for and that have none stored.

    One absence may be IB's passing trouble or an answer cut short, so a session is settled only when
    IB leaves it out again: in an answer that went past it (holds a later session), or on a later
    day. Until then it is asked again.
    """
    from ibkr_market_data.backfill_plan import NO_DATA_FROM_IB

    if target.session_dates is not None and received.issuperset(target.session_dates):
        return  # a bar for every session: nothing can be absent (and nothing to ask the database)
    absent = [day for day in _missing_sessions(conn, target, timeframe) if day not in received]
    newest = max(received, default=None)
    passed = [day for day in absent if newest is not None and day < newest]
    at_the_end = [day for day in absent if day not in passed]
    for sessions, past_them in ((passed, True), (at_the_end, False)):
        if not sessions:
            continue
        repository.record_no_data_sessions(
            conn, target.symbol_id, timeframe, sessions, NO_DATA_FROM_IB, run, past_them=past_them
        )
        log.info(
            "%s: IB sent no bar for %s (%s)",
            target.label,
            ", ".join(map(str, sessions)),
            "its answer has later sessions" if past_them else "at the end of its answer",
        )


def _record_short_sessions(
    conn: Connection, target: CollectionTarget, timeframe: str, bars: Sequence[Bar], run: RunContext
) -> None:
    """Record the target's intraday sessions answered with fewer bars than their schedule holds.

    Each is held against its stored daily bar; see ``repository.record_short_sessions`` for when it
    is settled.
    """
    scheduled = {
        dt.date.fromisoformat(day): count
        for day, count in zip(target.sessions, target.expected_bars, strict=False)
    }
    by_session: dict[dt.date, list[Bar]] = {}
    for bar in bars:
        by_session.setdefault(target.session_of(bar), []).append(bar)
    short = {day: answered for day, answered in by_session.items() if len(answered) < scheduled.get(day, 0)}
    if not short:
        return
    daily = repository.bars_by_session(conn, target.symbol_id, DAILY_TIMEFRAME, min(short), max(short))
    found = {
        day: (len(answered), scheduled[day], adds_up_to(answered, daily.get(day)))
        for day, answered in short.items()
    }
    repository.record_short_sessions(conn, target.symbol_id, timeframe, found, run)
    for day, (count, expected, agrees) in sorted(found.items()):
        log.info(
            "%s %s: IB answered %d of %d scheduled bars (a halt or minutes without a trade); %s",
            target.label,
            day,
            count,
            expected,
            "they add up to the daily bar" if agrees else "they do not add up to a stored daily bar yet",
        )
