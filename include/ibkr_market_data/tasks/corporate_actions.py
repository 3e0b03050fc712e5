"""The daily DAG's corporate_actions task: what IB did to the symbols, found after collecting.

Symbols IB stopped answering for (and, weekly, every symbol) are resolved again; splits the lookback
revealed are recorded and the history re-fetched. It never fails the run. See docs/corporate-actions.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ibkr_market_data import identity, rebase, repository
from ibkr_market_data.daily_plan import CollectionTarget, session_timestamp
from ibkr_market_data.errors import CollectionError, IbErrorCode
from ibkr_market_data.identity import IdentityOutcome, IdentityStatus
from ibkr_market_data.repository import AttemptStatus, RunContext, RunWindow
from ibkr_market_data.tasks.ib_session import ib_session

if TYPE_CHECKING:
    import psycopg

    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.payloads import TargetPayload

log = logging.getLogger(__name__)

#: ``corporate_actions.detected_by`` of a change found because the run's request failed or came back empty.
DETECTED_BY_RUN = "daily run"
#: ... and of one found by the weekly resolution of every symbol.
DETECTED_BY_SCHEDULE = "weekly resolution"


def settle(
    trading_date: str | None, params: Mapping[str, Any], run: RunContext, now: dt.datetime | None = None
) -> dict[str, int]:
    """Record identity changes, delistings and splits after the run's collection; return the counts.

    A symbol whose request failed with IB's 200 (no security definition) or came back without data
    is resolved again, as is every symbol last resolved over a week ago. A new conId is recorded and
    the symbol's windows collected again with it; a delisting marks the symbol inactive and closes
    its failed windows. Then the daily bars the lookback revised by one ratio are recorded as a split
    and the symbol's stored history fetched again.

    :param trading_date: the run's trading date; None when its task failed (nothing is done).
    :param params: the run's params: a dry run does nothing.
    :param run: the run's identity and this task's try.
    :param now: the current time; default the clock.
    """
    if trading_date is None or params.get("dry_run"):
        return {}
    day = dt.date.fromisoformat(trading_date)
    with ib_session() as (conn, hook):
        windows = repository.run_latest_windows(conn, run)
        conn.commit()
        outcomes = _recheck(conn, hook, windows, day, now or dt.datetime.now(dt.UTC))
        for outcome in outcomes:
            if outcome.status is IdentityStatus.CON_ID_CHANGE:
                _collect_again(conn, hook, run, outcome, windows)
            elif outcome.status is IdentityStatus.DELISTED:
                _close_failed_windows(conn, run, outcome, windows)
        splits = rebase.record_splits(conn, run, day)
        rebased = rebase.rebase_pending_splits(conn, hook, run)
    counts = {
        "rechecked": len(outcomes),
        "con_id_changes": sum(o.status is IdentityStatus.CON_ID_CHANGE for o in outcomes),
        "delistings": sum(o.status is IdentityStatus.DELISTED for o in outcomes),
        "splits": len(splits),
        "rebase_requests": sum(outcome.requests for outcome in rebased),
        "rebase_revised": sum(outcome.revised for outcome in rebased),
    }
    log.info("Corporate actions for %s: %s", trading_date, counts)
    return counts


def _stopped_answering(window: RunWindow) -> bool:
    """Return whether a window's outcome may mean the contract changed: IB's 200, or no data at all."""
    if window.status == AttemptStatus.FAILED:
        return window.error_code == IbErrorCode.NO_SECURITY_DEFINITION
    return window.status == AttemptStatus.NO_DATA


def _recheck(
    conn: psycopg.Connection,
    hook: IbkrHook,
    windows: Sequence[RunWindow],
    day: dt.date,
    now: dt.datetime,
) -> list[IdentityOutcome]:
    """Resolve again the symbols IB stopped answering for in this run, then those due a weekly turn."""
    suspect = {window.symbol_id for window in windows if _stopped_answering(window)}
    rows = [row for row in repository.symbols_by_id(conn, sorted(suspect)).values() if row.active]
    outcomes = identity.recheck_identities(conn, hook, rows, day, DETECTED_BY_RUN)
    due = [row for row in identity.due_for_recheck(conn, now) if row.id not in suspect]
    conn.commit()
    if due:
        log.info("Resolving %d symbols again: their last resolution is over a week old", len(due))
    return outcomes + identity.recheck_identities(conn, hook, due, day, DETECTED_BY_SCHEDULE)


def _next_try(run: RunContext, windows: Sequence[RunWindow], symbol_id: int) -> RunContext:
    """Return ``run`` with a try after every attempt of the symbol in it: its rows then count as latest."""
    tries = [window.try_number for window in windows if window.symbol_id == symbol_id]
    return dataclasses.replace(run, try_number=max([run.try_number, *tries]) + 1)


def _collect_again(
    conn: psycopg.Connection,
    hook: IbkrHook,
    run: RunContext,
    outcome: IdentityOutcome,
    windows: Sequence[RunWindow],
) -> None:
    """Collect again, with the new conId, the symbol's windows of this run that failed or came back empty."""
    from ibkr_market_data.attempt import collect_target

    assert outcome.new_con_id is not None  # a conId change has its new conId
    again = {
        (window.timeframe, window.start_date)
        for window in windows
        if window.symbol_id == outcome.symbol_id
        and window.status in (AttemptStatus.FAILED, AttemptStatus.NO_DATA)
    }
    retry = _next_try(run, windows, outcome.symbol_id)
    for item in cast("list[TargetPayload]", repository.planned_items(conn, run)):
        target = CollectionTarget.from_dict(item)
        key = (target.timeframe.name, session_timestamp(target.first_session_date))
        if target.symbol_id != outcome.symbol_id or key not in again:
            continue
        try:
            collect_target(
                conn, hook, dataclasses.replace(target, con_id=outcome.new_con_id), retry, record_absent=True
            )
        except CollectionError as exc:
            log.warning(
                "%s: collecting again with conId %s failed: %s", target.label, outcome.new_con_id, exc
            )


def _close_failed_windows(
    conn: psycopg.Connection, run: RunContext, outcome: IdentityOutcome, windows: Sequence[RunWindow]
) -> None:
    """Close the delisted symbol's failed windows of this run: a ``skipped`` attempt naming the delisting."""
    retry = _next_try(run, windows, outcome.symbol_id)
    for window in windows:
        if window.symbol_id == outcome.symbol_id and window.status == AttemptStatus.FAILED:
            repository.log_skipped(
                conn,
                retry,
                [(outcome.symbol_id, outcome.reason)],
                window.timeframe,
                window.start_date,
                window.end_date,
            )
    conn.commit()
