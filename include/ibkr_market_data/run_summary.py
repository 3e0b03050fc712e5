"""Read back what one run did from ``collection_logs``: the summary tasks and the CLI print the same.

A symbol counts by its latest attempt in the run; *unfinished* symbols were planned but have no
final status. See docs/daily-dag.md.
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
    """A symbol whose latest attempt in the run failed, and why."""

    symbol: str
    reason: str
    ib_code: int | None


@dataclass(frozen=True)
class RunSummary:
    """One run's outcome: symbols per status, failures, bars stored and unfinished symbols."""

    dag_id: str
    run_id: str
    counts: dict[str, int]  # symbols per latest status
    failures: list[Failure]
    bars_stored: int
    unfinished: list[str]

    def status_line(self) -> str:
        """Return the counts in one line: ``completed 7, failed 1; 7 bars stored``."""
        counts = ", ".join(f"{status} {n}" for status, n in sorted(self.counts.items()))
        return f"{counts or 'nothing to do'}; {self.bars_stored} bars stored"

    def problems(self, unfinished_label: str = "planned symbols") -> list[str]:
        """Return one sentence per kind of problem (failed symbols, unfinished ones); none if all is fine."""
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
    """Return the summary of run ``run_id`` of ``dag_id``.

    :param planned: symbol id -> symbol of the run's plan; without it no symbol counts as unfinished,
        since only the plan knows what the run meant to do.
    :param still_missing: planned symbols still lacking sessions the run set out to fill; unless one
        of their attempts failed (a failure), they are unfinished: a window never sent.
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
        """Return the coverage as one line of the run's summary."""
        return (
            f"{self.session.isoformat()}: {self.stored} of {self.expected} active symbols trading that "
            "day have their daily bar"
        )


def read_session_coverage(conn: psycopg.Connection, dag_id: str, run_id: str) -> list[SessionCoverage]:
    """Return the coverage of each session the run attempted one at a time (a daily run's trading date).

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
    """Return ``symbols`` as ``A, B, C and 12 more``, for log lines and errors."""
    listed = list(symbols)
    more = f" and {len(listed) - limit} more" if len(listed) > limit else ""
    return ", ".join(listed[:limit]) + more
