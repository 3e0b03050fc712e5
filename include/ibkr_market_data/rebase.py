"""Record the splits a run's re-fetch revealed, and fetch the split symbols' stored history on the new basis.

Every changed bar goes to ``bar_revisions``; each request is an attempt in ``collection_logs``.
See docs/corporate-actions.md#splits.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ibkr_market_data import calendars, repository
from ibkr_market_data.bars import DAILY_TIMEFRAME, latest_per_timestamp
from ibkr_market_data.corporate_actions import first_session_after, plan_rebase, ratio_decimal, split_ratio
from ibkr_market_data.daily_plan import session_timestamp
from ibkr_market_data.errors import IbkrError, IbkrNoDataError, InvalidBarError
from ibkr_market_data.repository import AttemptStatus
from ibkr_market_data.timeframes import TIMEFRAMES, session_date

if TYPE_CHECKING:
    from psycopg import Connection

    from ibkr_market_data.daily_plan import CollectionTarget
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.repository import RunContext, SymbolRow

log = logging.getLogger(__name__)

#: ``corporate_actions.detected_by`` of a split the daily run's lookback re-fetch revealed.
DETECTED_BY_LOOKBACK = "lookback"
#: ``details.rebase`` while the symbol's history is still to be fetched again, and once it is.
REBASE_PENDING = "pending"
REBASE_DONE = "done"


@dataclass(frozen=True)
class DetectedSplit:
    """A split one run revealed: the symbol, its ratio, the session it took effect and the bars revised."""

    symbol_id: int
    symbol: str
    ratio: Fraction
    effective_session: dt.date
    revised: int


def record_splits(conn: Connection, run: RunContext, trading_date: dt.date) -> list[DetectedSplit]:
    """Record as a split each symbol whose daily bars this run revised by one constant ratio; commit.

    :param conn: the market-data connection.
    :param run: the run whose revisions are read (its lookback re-fetch wrote them).
    :param trading_date: the run's date: the latest session a split can be dated.
    :return: the splits recorded now (one already recorded is not returned again).
    """
    revisions = repository.run_revisions(conn, run, DAILY_TIMEFRAME)
    rows = repository.symbols_by_id(conn, list(revisions))
    found = []
    for symbol_id, revised in revisions.items():
        ratio = split_ratio(revised)
        row = rows.get(symbol_id)
        if ratio is None or row is None:
            continue
        newest = max(revision.timestamp.date() for revision in revised)
        effective = first_session_after(row.primary_exchange, newest, trading_date)
        action_id = repository.record_corporate_action(
            conn,
            symbol_id,
            "split",
            effective,
            DETECTED_BY_LOOKBACK,
            ratio=ratio_decimal(ratio),
            details={"rebase": REBASE_PENDING, "revised_by_lookback": len(revised), "run_id": run.run_id},
        )
        if action_id is None:
            # Recorded already (by the file of known actions, or an earlier try of this run): its
            # history changed again by the ratio, so fetch it again.
            repository.mark_rebase_pending(conn, symbol_id, effective)
            conn.commit()
            continue
        conn.commit()
        log.warning(
            "%s: split %s:%s effective %s (the lookback re-fetch changed %d stored bars by that one ratio); "
            "its stored history is fetched again on the new basis",
            row.symbol,
            ratio.numerator,
            ratio.denominator,
            effective,
            len(revised),
        )
        found.append(DetectedSplit(symbol_id, row.symbol, ratio, effective, len(revised)))
    return found


@dataclass
class RebaseCounts:
    """What fetching one timeframe again did."""

    sessions: int = 0
    ranges: int = 0
    requests: int = 0
    bars: int = 0
    revised: int = 0
    #: Stored bars no answer held (IB no longer serves them): left on the old basis.
    not_served: int = 0

    def as_json(self) -> dict[str, int]:
        """Return the counts as the JSON object ``corporate_actions.details`` keeps."""
        return dict(vars(self))


@dataclass
class RebaseOutcome:
    """What fetching a split symbol's history again did, per timeframe; ``complete``: every request ran."""

    symbol: str
    complete: bool = True
    per_timeframe: dict[str, RebaseCounts] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Requests sent over every timeframe."""
        return sum(counts.requests for counts in self.per_timeframe.values())

    @property
    def revised(self) -> int:
        """Bars changed over every timeframe."""
        return sum(counts.revised for counts in self.per_timeframe.values())


def rebase_pending_splits(conn: Connection, hook: IbkrHook, run: RunContext) -> list[RebaseOutcome]:
    """Fetch again the stored history of every split symbol not yet on the new basis; commit as it goes.

    A split whose requests all ran is marked done, with its counts; one interrupted by an IB failure
    stays pending, and the next run fetches it again (bars already on the new basis do not change).
    """
    outcomes = []
    for action in repository.splits_to_rebase(conn):
        rows = repository.symbols_by_id(conn, [action["symbol_id"]])
        row = rows.get(action["symbol_id"])
        if row is None:
            continue
        outcome = rebase_symbol(conn, hook, row, action["effective_session"], run)
        details: dict[str, Any] = {
            "rebase": REBASE_DONE if outcome.complete else REBASE_PENDING,
            "refetched": {tf: counts.as_json() for tf, counts in outcome.per_timeframe.items()},
        }
        repository.update_action_details(conn, action["id"], details)
        conn.commit()
        outcomes.append(outcome)
    return outcomes


def rebase_symbol(
    conn: Connection, hook: IbkrHook, row: SymbolRow, effective: dt.date, run: RunContext
) -> RebaseOutcome:
    """Fetch again every stored bar of ``row`` from sessions before ``effective``, daily and intraday.

    One request per contiguous run of stored sessions, cut at IB's longest duration for the bar size.
    Only bars of sessions already stored are written: filling gaps is the backfill's work.
    """
    outcome = RebaseOutcome(row.symbol)
    zone = calendars.time_zone(row.primary_exchange)
    for name in repository.stored_timeframes(conn, row.id):
        tf = TIMEFRAMES[name]
        # An intraday session can start the UTC day before (ASX): read a day past, then name sessions.
        before = session_timestamp(effective) + (dt.timedelta(days=1) if tf.intraday else dt.timedelta())
        stored = [
            timestamp
            for timestamp in repository.stored_timestamps(conn, row.id, name, before)
            if _session(timestamp, zone if tf.intraday else "") < effective
        ]
        plan = plan_rebase(
            row, tf, {_session(timestamp, zone if tf.intraday else "") for timestamp in stored}
        )
        counts = RebaseCounts(sessions=len(plan.sessions), ranges=len(plan.runs))
        outcome.per_timeframe[name] = counts
        fetched: set[dt.datetime] = set()
        for target in plan.targets:
            if not _fetch_again(conn, hook, target, set(plan.sessions), run, counts, fetched):
                outcome.complete = False
                break
        counts.not_served = len(set(stored) - fetched)
        log.info(
            "%s %s: %d stored sessions before %s in %d ranges fetched again with %d requests: "
            "%d bars, %d revised, %d not served by IB (left on the old basis)",
            row.symbol,
            name,
            counts.sessions,
            effective,
            counts.ranges,
            counts.requests,
            counts.bars,
            counts.revised,
            counts.not_served,
        )
        if not outcome.complete:
            break
    return outcome


def _session(timestamp: dt.datetime, zone: str) -> dt.date:
    return session_date(timestamp, zone) if zone else timestamp.date()


def _fetch_again(
    conn: Connection,
    hook: IbkrHook,
    target: CollectionTarget,
    stored_sessions: set[dt.date],
    run: RunContext,
    counts: RebaseCounts,
    fetched: set[dt.datetime],
) -> bool:
    """Send one request of a rebase, store its bars of stored sessions as one attempt; False if it failed."""
    timeframe = target.timeframe.name
    window = (session_timestamp(target.first_session_date), session_timestamp(target.session_date))
    log_id = repository.start_attempt(conn, run, target.symbol_id, timeframe, *window)
    conn.commit()
    try:
        bars = hook.fetch_bars(target.contract(), target.end_date_time, target.duration, target.bar_size)
    except IbkrNoDataError:
        bars = []
    except (IbkrError, InvalidBarError) as exc:
        counts.requests += 1
        code = exc.code if isinstance(exc, IbkrError) else None
        repository.finish_attempt(
            conn, log_id, AttemptStatus.FAILED, requests_sent=1, error_message=str(exc), error_code=code
        )
        conn.commit()
        log.warning("%s: fetching history again failed (%s); the next run tries again", target.label, exc)
        return False
    counts.requests += 1
    first, last = target.first_session_date, target.session_date
    wanted = latest_per_timestamp(
        [
            bar
            for bar in bars
            if first <= target.session_of(bar) <= last and target.session_of(bar) in stored_sessions
        ]
    )
    result = repository.store_backfilled_bars(conn, target.symbol_id, timeframe, wanted, run)
    repository.finish_attempt(
        conn,
        log_id,
        AttemptStatus.COMPLETED if wanted else AttemptStatus.NO_DATA,
        records_collected=len(wanted),
        requests_sent=1,
        error_message=None if wanted else "history fetched again after a split: IB served none of it",
    )
    conn.commit()
    counts.bars += len(wanted)
    counts.revised += result.revised
    fetched.update(bar.timestamp for bar in wanted)
    return True
