"""Plan a backfill: which (symbol, session) pairs are missing, and the fewest requests that fill them.

Pure: symbols, exchange calendars, stored bars and known no-data sessions in; per symbol the
missing sessions, their runs and the requests out. The task module reads the database and talks to IB.
See docs/backfill.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ibkr_market_data import calendars
from ibkr_market_data.bars import DAILY_BAR_SIZE
from ibkr_market_data.daily_plan import CollectionTarget, Skip, daily_target, intraday_target, split_windows
from ibkr_market_data.errors import InvalidRunParamError, UnknownExchangeError
from ibkr_market_data.payloads import BackfillRequestPayload
from ibkr_market_data.repository import SymbolRow
from ibkr_market_data.timeframes import DAILY, TIMEFRAMES, Timeframe
from ibkr_market_data.universe import Membership

#: The longest window one request may cover: ``365 D`` is IB's longest duration in days.
MAX_REQUEST_DAYS = 365

NO_DATA_FROM_IB = "no data from IB"
NO_GAPS = "no gaps"


def no_gaps_reason(start: dt.date, end: dt.date) -> str:
    """Return the skip reason of a symbol with nothing missing in ``start..end``."""
    return f"{NO_GAPS} in {start.isoformat()}..{end.isoformat()}"


def before_first_available(first_available: dt.date) -> str:
    """Return the no-data reason of a session before the symbol's first available date."""
    return (
        f"{NO_DATA_FROM_IB}: before its first available date {first_available.isoformat()} "
        "(IB head timestamp)"
    )


@dataclass(frozen=True)
class BackfillRange:
    """A checked backfill request: what to fill, for which exchanges and symbols."""

    start: dt.date
    end: dt.date
    exchanges: tuple[str, ...]
    symbols: tuple[str, ...] = ()
    dry_run: bool = False
    #: Ask IB again for sessions settled as having no data (``recheck_no_data``).
    recheck_no_data: bool = False
    #: The ``market_data.timeframe`` to fill (``timeframes.TIMEFRAMES``).
    timeframe: str = DAILY.name

    @property
    def tf(self) -> Timeframe:
        """The timeframe to fill."""
        return TIMEFRAMES[self.timeframe]

    def to_dict(self) -> BackfillRequestPayload:
        """Return the range as the dict that travels through XCom."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "exchanges": list(self.exchanges),
            "symbols": list(self.symbols),
            "dry_run": self.dry_run,
            "recheck_no_data": self.recheck_no_data,
            "timeframe": self.timeframe,
        }

    @classmethod
    def from_dict(cls, data: BackfillRequestPayload) -> BackfillRange:
        """Return the range ``to_dict`` made ``data`` from (older payloads lack the later fields)."""
        return cls(
            start=dt.date.fromisoformat(data["start"]),
            end=dt.date.fromisoformat(data["end"]),
            exchanges=tuple(data["exchanges"]),
            symbols=tuple(data["symbols"]),
            dry_run=data["dry_run"],
            recheck_no_data=data.get("recheck_no_data", False),
            timeframe=data.get("timeframe", DAILY.name),
        )


def check_backfill_range(start: dt.date, end: dt.date, today: dt.date) -> None:
    """Refuse a range no request should be sent for; the message names the param and the fix.

    The earliest date is where the exchange calendars we ship start: IB's own daily history goes
    further back, but a session we cannot name is a session we cannot call missing.
    """
    if start > end:
        raise InvalidRunParamError(
            f"Param 'start_date' {start.isoformat()} is after 'end_date' {end.isoformat()}; swap them."
        )
    for name, day in (("start_date", start), ("end_date", end)):
        if day > today:
            raise InvalidRunParamError(
                f"Param {name!r} is {day.isoformat()}, in the future (today is {today.isoformat()} UTC); "
                "IB has no bars yet. Give past dates."
            )
    earliest = calendars.CALENDAR_START
    if start < earliest:
        raise InvalidRunParamError(
            f"Param 'start_date' is {start.isoformat()}, before {earliest.isoformat()}, the earliest "
            f"{DAILY_BAR_SIZE} bars this collector backfills (its exchange calendars start there). "
            f"Start on or after {earliest.isoformat()}."
        )


def closed_sessions(exchange: str, start: dt.date, end: dt.date, now: dt.datetime) -> list[dt.date]:
    """Return the sessions of ``exchange`` in ``[start, end]`` closed by ``now``: the ones IB has bars for."""
    sessions = calendars.sessions_between(exchange, start, end)
    while sessions and calendars.session_close(exchange, sessions[-1]) > now:
        sessions.pop()
    return sessions


@dataclass(frozen=True)
class SessionRun:
    """Missing sessions that follow each other in the exchange's calendar."""

    first: dt.date
    last: dt.date
    sessions: int


def contiguous_runs(calendar_sessions: Sequence[dt.date], missing: Iterable[dt.date]) -> list[SessionRun]:
    """Group ``missing`` (a subset of ``calendar_sessions``) into runs consecutive in the calendar."""
    wanted = set(missing)
    runs: list[SessionRun] = []
    current: list[dt.date] = []
    for session in calendar_sessions:
        if session in wanted:
            current.append(session)
        elif current:
            runs.append(SessionRun(current[0], current[-1], len(current)))
            current = []
    if current:
        runs.append(SessionRun(current[0], current[-1], len(current)))
    return runs


@dataclass(frozen=True)
class RangeRequest:
    """One request: ``duration`` days ending at the end of session ``last``; fills ``missing`` sessions."""

    first: dt.date
    last: dt.date
    missing: int
    runs: int

    @property
    def days(self) -> int:
        """The calendar days the request spans."""
        return (self.last - self.first).days + 1

    @property
    def duration(self) -> str:
        """The request's IB duration string, ``N D``."""
        return f"{self.days} D"


def _span_days(first: dt.date, last: dt.date) -> int:
    return (last - first).days + 1


def plan_requests(
    calendar_sessions: Sequence[dt.date], missing: Iterable[dt.date], max_days: int = MAX_REQUEST_DAYS
) -> list[RangeRequest]:
    """Return the fewest requests, each at most ``max_days`` calendar days, that cover every missing session.

    Greedy in date order, which is optimal for covering points on a line with windows of fixed
    length: each request starts at the first session not yet covered and takes every later
    missing session that fits. Each window ends at a missing session, so it never reaches past
    the last gap.
    """
    wanted = sorted(set(missing))
    wanted_set = set(wanted)
    run_of: dict[dt.date, int] = {}
    run_index, in_run = -1, False
    for session in calendar_sessions:
        if session in wanted_set:
            run_index += 0 if in_run else 1
            run_of[session] = run_index
        in_run = session in wanted_set
    requests = [
        RangeRequest(
            first=window[0],
            last=window[-1],
            missing=len(window),
            runs=len({run_of.get(session, -1) for session in window}),
        )
        for window in split_windows(wanted, max_days)
    ]
    return requests


@dataclass(frozen=True)
class SymbolGaps:
    """One symbol's gaps in the range and the requests that fill them."""

    symbol_id: int
    symbol: str
    exchange: str
    sessions: int  # closed sessions of its exchange in the range
    stored: int
    known_no_data: int  # in no_data_sessions, or before the first available date
    missing: list[dt.date] = field(default_factory=list)
    runs: list[SessionRun] = field(default_factory=list)
    requests: list[RangeRequest] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether no session is missing."""
        return not self.missing


def symbol_gaps(
    row: SymbolRow,
    start: dt.date,
    end: dt.date,
    now: dt.datetime,
    stored: Iterable[dt.date],
    no_data: Iterable[dt.date] = (),
    first_available: dt.date | None = None,
    max_days: int = MAX_REQUEST_DAYS,
    memberships: Sequence[Membership] = (),
) -> SymbolGaps:
    """Return the gaps of ``row`` in ``[start, end]``, given the dates stored and known to have no data.

    With ``memberships`` (the symbol's universe-file periods), only sessions inside one are expected.
    """
    calendar = closed_sessions(row.primary_exchange, start, end, now)
    sessions = [
        session
        for session in calendar
        if not memberships or any(membership.covers(session) for membership in memberships)
    ]
    have = set(stored)
    known_empty = set(no_data)
    if first_available is not None:
        known_empty |= {session for session in sessions if session < first_available}
    missing = [session for session in sessions if session not in have and session not in known_empty]
    return SymbolGaps(
        symbol_id=row.id,
        symbol=row.symbol,
        exchange=row.primary_exchange,
        sessions=len(sessions),
        stored=sum(1 for session in sessions if session in have),
        known_no_data=sum(1 for session in sessions if session in known_empty and session not in have),
        missing=missing,
        runs=contiguous_runs(calendar, missing),
        requests=plan_requests(calendar, missing, max_days),
    )


def request_targets(row: SymbolRow, gaps: SymbolGaps, tf: Timeframe = DAILY) -> list[CollectionTarget]:
    """Return the ``CollectionTarget`` of each planned request (``N D`` ending at its last session).

    An intraday request names the sessions it covers and the bars each holds by the schedule, so
    its attempt can tell a whole session from a partial one.
    """
    if not tf.intraday:
        return [daily_target(row, request.first, request.last) for request in gaps.requests]
    return [
        intraday_target(
            row, tf, calendars.sessions_between(row.primary_exchange, request.first, request.last)
        )
        for request in gaps.requests
    ]


def report_gaps(
    request: BackfillRange,
    rows: Sequence[SymbolRow],
    now: dt.datetime,
    stored: Mapping[int, Iterable[dt.date]],
    no_data: Mapping[int, Iterable[dt.date]],
    first_available: Mapping[int, dt.date],
    memberships: Mapping[int, Sequence[Membership]] | None = None,
) -> GapReport:
    """Return every row's gaps in the range, given per symbol id the dates stored and known to have no data.

    A symbol is expected only inside its universe-file ``memberships``, where it has any.

    A symbol whose primary exchange has no calendar here is skipped with the reason, alone.
    Requests are split by the longest window IB accepts for the range's bar size.
    """
    symbols: list[SymbolGaps] = []
    skips: list[Skip] = []
    for row in rows:
        try:
            gaps = symbol_gaps(
                row,
                request.start,
                request.end,
                now,
                stored.get(row.id, ()),
                no_data.get(row.id, ()),
                first_available.get(row.id),
                max_days=request.tf.max_request_days,
                memberships=(memberships or {}).get(row.id, ()),
            )
        except UnknownExchangeError as exc:
            skips.append(Skip(row.id, row.symbol, str(exc)))
        else:
            symbols.append(gaps)
    return GapReport(request, symbols, skips)


@dataclass(frozen=True)
class GapReport:
    """The gaps of a backfill range: per symbol, and the symbols skipped."""

    range: BackfillRange
    symbols: list[SymbolGaps]
    skips: list[Skip] = field(default_factory=list)  # symbols no gap can be found for

    @property
    def with_gaps(self) -> list[SymbolGaps]:
        """The symbols with a missing session."""
        return [gaps for gaps in self.symbols if not gaps.complete]

    def totals(self) -> dict[str, int]:
        """Return the report's counts summed over its symbols."""
        return {
            "symbols": len(self.symbols),
            "symbols_with_gaps": len(self.with_gaps),
            "sessions": sum(g.sessions for g in self.symbols),
            "stored": sum(g.stored for g in self.symbols),
            "known_no_data": sum(g.known_no_data for g in self.symbols),
            "missing": sum(len(g.missing) for g in self.symbols),
            "runs": sum(len(g.runs) for g in self.symbols),
            "requests": sum(len(g.requests) for g in self.symbols),
        }

    def lines(self, detail_limit: int = 50) -> list[str]:
        """Return the report as text: totals, then one line per symbol with gaps and its requests."""
        totals = self.totals()
        span = f"{self.range.start.isoformat()}..{self.range.end.isoformat()}"
        lines = [
            f"Gaps {span} on {', '.join(self.range.exchanges)}: {totals['symbols']} symbols, "
            f"{totals['sessions']} closed sessions, {totals['stored']} stored, "
            f"{totals['known_no_data']} known to have no data, {totals['missing']} missing in "
            f"{totals['runs']} runs over {totals['symbols_with_gaps']} symbols -> "
            f"{totals['requests']} requests"
        ]
        for gaps in self.with_gaps[:detail_limit]:
            runs = ", ".join(
                run.first.isoformat()
                if run.first == run.last
                else f"{run.first.isoformat()}..{run.last.isoformat()}"
                for run in gaps.runs
            )
            requests = "; ".join(
                f"{request.duration} ending {request.last.isoformat()}" for request in gaps.requests
            )
            lines.append(
                f"  {gaps.symbol} ({gaps.exchange}): {len(gaps.missing)} missing [{runs}] -> {requests}"
            )
        if len(self.with_gaps) > detail_limit:
            lines.append(f"  ... and {len(self.with_gaps) - detail_limit} more symbols with gaps")
        lines += [f"  {skip.symbol}: skipped, {skip.reason}" for skip in self.skips]
        return lines
