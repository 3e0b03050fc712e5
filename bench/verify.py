"""Verify a measured run's work: every planned bar stored, equal to what IB serves, written by that run.

The bars IB serves come from the simulator's served model, not from the collector's own records;
a run that fails verification gets no verdict. See docs/benchmarks.md#rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from campaign.invariants import Difference, Expected, Key, Snapshot, lost

#: Differences a verification keeps as examples; the count keeps the rest.
EXAMPLES = 5
PREEXISTING = "stored before the run started"


@dataclass(frozen=True)
class Verification:
    """What a run's plan asked for and how the database compares with the bars IB serves."""

    planned_keys: int
    planned_bars: int
    differences: int
    preexisting: int
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the run planned something and stored every planned bar itself, as IB serves it."""
        return self.planned_keys > 0 and not self.differences and not self.preexisting

    def to_dict(self) -> dict[str, Any]:
        """Return the figures for results.json."""
        return {
            "ok": self.ok,
            "planned_keys": self.planned_keys,
            "planned_bars": self.planned_bars,
            "differences": self.differences,
            "preexisting": self.preexisting,
            "examples": self.examples,
        }


def compare(expected: Expected, snapshot: Snapshot, stored_before: Collection[Key]) -> Verification:
    """Return how ``snapshot`` holds the ``expected`` bars of the planned keys.

    :param expected: what IB serves for every planned key (``campaign.observe.served_bars``).
    :param snapshot: what the database holds for them (``campaign.observe.db_snapshot``).
    :param stored_before: planned keys with a bar stored before the run started: not the run's work.
    """
    differences: list[Difference] = lost(expected, snapshot)
    preexisting = sorted(set(stored_before) & set(expected.bars))
    examples = [str(difference) for difference in differences[:EXAMPLES]]
    examples += [f"{symbol} {tf} {session}: {PREEXISTING}" for symbol, tf, session in preexisting[:EXAMPLES]]
    return Verification(
        planned_keys=len(expected.bars),
        planned_bars=sum(len(bars) for bars in expected.bars.values()),
        differences=len(differences),
        preexisting=len(preexisting),
        examples=examples,
    )


def stored_before(conn: Any, model: Any, keys: Collection[Key], started: dt.datetime) -> set[Key]:
    """Return the ``keys`` with a bar whose row was created before ``started`` (an aware moment)."""
    from campaign.observe import _session_of

    symbols = sorted({key[0] for key in keys})
    indexes = {symbol: model.session_index(model.contract(symbol)) for symbol in symbols}
    rows = conn.execute(
        """
        SELECT DISTINCT s.symbol, md.timeframe, md.timestamp
        FROM market_data md JOIN symbols s ON s.id = md.symbol_id
        WHERE s.symbol = ANY(%s) AND md.created_at < %s
        """,
        (symbols, started),
    ).fetchall()
    wanted = set(keys)
    return {
        key
        for symbol, timeframe, timestamp in rows
        if (key := (symbol, timeframe, _session_of(indexes[symbol], timeframe, timestamp))) in wanted
    }


def verify_run(
    market_db: str,
    simulator: Any,
    dag_id: str,
    run_id: str,
    started: dt.datetime,
    stored_by_bench: Collection[Key] = (),
) -> Verification:
    """Verify run ``run_id`` of ``dag_id`` against the simulator's served model, as of the simulator's now.

    :param started: when the run was triggered (aware); bars created earlier are not its work.
    :param stored_by_bench: keys the bench stored before the run (a steady state's earlier
        sessions, ``bench.steady_state``): not the run's work, left out of its planned keys.
    """
    import psycopg

    from campaign.observe import db_snapshot, plan_keys, served_bars

    with psycopg.connect(market_db) as conn:
        keys = plan_keys(conn, [(dag_id, run_id)]) - set(stored_by_bench)
        served = served_bars(simulator.served, keys, simulator.simulator.now())
        snapshot = db_snapshot(conn, simulator.model, keys)
        before = stored_before(conn, simulator.model, keys, started)
    return compare(served.expected, snapshot, before)
