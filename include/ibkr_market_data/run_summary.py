"""What one run did, read back from ``collection_logs``: the summary tasks and the CLI print the same.

A symbol counts by its latest attempt in the run. *Unfinished* symbols were planned but have no
final status: their task never ran to the end (a lost worker, a missing pool). *Session coverage*
says what is stored for the sessions a run collected, whichever run stored it: a run that skipped
every symbol because a scheduled run had already collected them still reports a complete date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ibkr_market_data import repository

if TYPE_CHECKING:
    import psycopg


class Failure(NamedTuple):
    symbol: str
    reason: str
    ib_code: int | None


@dataclass(frozen=True)
class RunSummary:
    dag_id: str
    run_id: str
    counts: dict[str, int]  # symbols per latest status
    failures: list[Failure]
    bars_stored: int
    unfinished: list[str]

    def status_line(self) -> str:
        """``completed 7, failed 1; 7 bars stored``."""
        counts = ", ".join(f"{status} {n}" for status, n in sorted(self.counts.items()))
        return f"{counts or 'nothing to do'}; {self.bars_stored} bars stored"

    def problems(self, unfinished_label: str = "planned symbols") -> list[str]:
        """One sentence per kind of problem (failed symbols, unfinished ones); empty when the run is fine."""
        found = []
        if self.failures:
            found.append(
                f"{len(self.failures)} symbols failed: {short_list(f.symbol for f in self.failures)}"
            )
        if self.unfinished:
            found.append(
                f"{len(self.unfinished)} {unfinished_label} have no outcome: {short_list(self.unfinished)}"
            )
        return found


def read_run_summary(
    conn: psycopg.Connection,
    dag_id: str,
    run_id: str,
    planned: Mapping[int, str] | None = None,
    still_missing: Collection[int] = (),
) -> RunSummary:
    """The report of run ``run_id`` of ``dag_id``; ``planned`` (symbol id -> symbol) finds the unfinished ones.

    Without ``planned`` no symbol counts as unfinished: only the run's plan knows what it meant to do.
    ``still_missing``: planned symbols that still lack sessions the run set out to fill; unless one
    of their attempts failed (then they are failures), they are unfinished: a window never sent.
    """
    finished = repository.symbols_with_outcome(conn, dag_id, run_id) if planned else set()
    failed_ids = repository.symbols_failed(conn, dag_id, run_id) if still_missing else set()
    finished -= set(still_missing) - failed_ids
    return RunSummary(
        dag_id=dag_id,
        run_id=run_id,
        counts=repository.run_summary(conn, dag_id, run_id),
        failures=[Failure(*row) for row in repository.run_failures(conn, dag_id, run_id)],
        bars_stored=repository.run_records_collected(conn, dag_id, run_id),
        unfinished=sorted(
            symbol for symbol_id, symbol in (planned or {}).items() if symbol_id not in finished
        ),
    )


@dataclass(frozen=True)
class SessionCoverage:
    """How many of the symbols expected on ``session`` (by the calendars) have its daily bar stored."""

    session: dt.date
    stored: int
    expected: int

    def line(self) -> str:
        return (
            f"{self.session.isoformat()}: {self.stored} of {self.expected} active symbols trading that "
            "day have their daily bar"
        )


def read_session_coverage(conn: psycopg.Connection, dag_id: str, run_id: str) -> list[SessionCoverage]:
    """Coverage of each session the run attempted one at a time (a daily run's trading date).

    Counted as the dashboard counts it (``coverage.coverage``), summed over listing exchanges.
    """
    from ibkr_market_data import coverage

    sessions = []
    for session in repository.run_single_sessions(conn, dag_id, run_id):
        rows = coverage.coverage(conn, session, session)
        sessions.append(
            SessionCoverage(session, sum(row.stored for row in rows), sum(row.expected for row in rows))
        )
    return sessions


def short_list(symbols: Iterable[str], limit: int = 20) -> str:
    """``A, B, C and 12 more``: symbol lists for log lines and errors."""
    listed = list(symbols)
    more = f" and {len(listed) - limit} more" if len(listed) > limit else ""
    return ", ".join(listed[:limit]) + more
