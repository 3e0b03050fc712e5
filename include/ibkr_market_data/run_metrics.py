"""Record a run's metrics from its summary task: requests, bars, latency p50/p95, retries, wall time.

See docs/operations.md.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ibkr_market_data import repository

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


def record(conn: psycopg.Connection, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """Compute and store the run's metrics (per exchange and for the whole run), commit, log the totals.

    Return the whole run's row (None for a run without attempts). Recording again overwrites.
    """
    rows = repository.record_run_metrics(conn, dag_id, run_id)
    conn.commit()
    whole = next((row for row in rows if row["exchange"] == repository.ALL_EXCHANGES), None)
    if whole is None:
        log.info("Run metrics: no attempts recorded for %s %s", dag_id, run_id)
        return None
    wall = whole["wall_seconds"] or 0.0
    log.info(
        "Run metrics: %d requests, %d bars in %.1f s (%.1f bars/s), latency p50 %s s p95 %s s, %d retries",
        whole["requests"],
        whole["bars"],
        wall,
        whole["bars"] / wall if wall else 0.0,
        _seconds(whole["latency_p50"]),
        _seconds(whole["latency_p95"]),
        whole["retries"],
    )
    return whole


def _seconds(value: float | None) -> str:
    """Return ``value`` as seconds for a log line, ``n/a`` when there is none."""
    return "n/a" if value is None else f"{value:.3f}"
