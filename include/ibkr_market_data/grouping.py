"""Group a run's items into mapped task instances, as many as the run's expected work pays for.

Up to the pool's slots each instance is one item; beyond, contiguous groups of near-equal expected
work whose map index is ``FIRST…LAST (N)``, each collecting concurrently on one connection. See
docs/daily-dag.md#symbols-per-task.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from ibkr_market_data.errors import GroupingConfigError

T = TypeVar("T")

MAX_MAPPED_TASKS_VARIABLE = "IBKR_MAX_MAPPED_TASKS"
#: Airflow's ``[core] max_map_length`` default: a mapped task never expands past it.
AIRFLOW_MAX_MAP_LENGTH = 1024
#: IB's limit on historical requests open at once, per TWS / IB Gateway.
IB_OPEN_HISTORICAL_REQUESTS = 50
#: Open requests left to what runs outside the pool (a backfill's head timestamps, an operator's TWS).
OPEN_REQUESTS_RESERVE = 2
#: Seconds one IB request costs its group before the bars arrive: the latency the benchmark models
#: (``latency_ms`` 200 in bench/results.json), which a group overlaps ``in_flight`` at a time.
REQUEST_SECONDS = 0.2
#: Seconds one bar costs to parse and upsert: the bench's daily upsert, 41,000 bars/s.
BAR_SECONDS = 1 / 41_000
#: Seconds of the run one more task instance costs (scheduler, executor, API server, task process):
#: the daily run expands 3.2 instances a second, and 5,000 symbols took 0.36 s more per instance at
#: 259 instances than at 131 (bench/results.json, sections daily and scale).
INSTANCE_SECONDS = 0.3


def max_mapped_tasks(environ: Mapping[str, str] = os.environ) -> int | None:
    """Return the operator's ``IBKR_MAX_MAPPED_TASKS``, or None when unset (the run sizes itself).

    :raises GroupingConfigError: the value is not a whole number from 1 to Airflow's ``max_map_length``.
    """
    text = environ.get(MAX_MAPPED_TASKS_VARIABLE, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= AIRFLOW_MAX_MAP_LENGTH:
        raise GroupingConfigError(
            f"{MAX_MAPPED_TASKS_VARIABLE} is {text!r}; give a whole number from 1 to "
            f"{AIRFLOW_MAX_MAP_LENGTH} (Airflow's max_map_length), or unset it to size groups by the run"
        )
    return int(text)


def in_flight_per_connection(pool_slots: int) -> int:
    """Return the requests one group may have open: times the pool's slots, they stay under IB's 50."""
    if pool_slots < 1:
        raise ValueError(f"the ibkr pool needs at least one slot, not {pool_slots}")
    return max(1, (IB_OPEN_HISTORICAL_REQUESTS - OPEN_REQUESTS_RESERVE) // pool_slots)


def request_seconds(bars: int) -> float:
    """Return the expected seconds of one request of ``bars`` bars: its latency and its writes."""
    return REQUEST_SECONDS + bars * BAR_SECONDS


def group_count(
    items: int,
    work_seconds: float,
    pool_slots: int,
    in_flight: int,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Return how many task instances ``items`` of ``work_seconds`` expected work in all should make.

    One per item up to ``pool_slots``; beyond, the count that minimises the run's wall time, modelled
    as ``groups × INSTANCE_SECONDS`` of Airflow's overhead plus one group's share of the work at
    ``in_flight`` requests at a time: ``ceil(sqrt(work_seconds / (in_flight × INSTANCE_SECONDS)))``,
    never fewer than ``pool_slots`` (the pool stays busy) nor more than Airflow's ``max_map_length``.
    An ``IBKR_MAX_MAPPED_TASKS`` set by the operator is the count instead, at most one per item.

    :raises GroupingConfigError: ``IBKR_MAX_MAPPED_TASKS`` is set to something unusable.
    """
    if in_flight < 1 or pool_slots < 1:
        raise ValueError(f"pool_slots and in_flight must be at least 1, not {pool_slots} and {in_flight}")
    override = max_mapped_tasks(environ)
    if items <= 1:
        return 1  # what group_items needs to cut nothing or one item
    if override is not None:
        return min(items, override)
    if items <= pool_slots:
        return items
    best = math.ceil(math.sqrt(work_seconds / (in_flight * INSTANCE_SECONDS)))
    return min(items, AIRFLOW_MAX_MAP_LENGTH, max(pool_slots, best))


def group_label(names: Sequence[str]) -> str:
    """Return the map index of a group: its one symbol, or ``FIRST…LAST (N)``."""
    if len(names) == 1:
        return names[0]
    return f"{names[0]}…{names[-1]} ({len(names)})"


def group_items(
    items: Sequence[T],
    max_instances: int,
    name: Callable[[T], str],
    work: Callable[[T], float] = lambda _: 1.0,
) -> list[tuple[str, list[T]]]:
    """Cut ``items``, in order, into at most ``max_instances`` groups of near-equal ``work``, each labelled.

    Each group takes items until it holds its share of the work still to group (that work over the
    groups still to make), so items of equal work make groups whose sizes differ by at most one.
    """
    if max_instances < 1:
        raise ValueError(f"max_instances must be at least 1, not {max_instances}")
    count = min(len(items), max_instances)
    if not count:
        return []
    # Whole micro-seconds keep the comparisons exact: equal work cuts exactly as by count.
    weights = [max(1, round(work(item) * 1_000_000)) for item in items]
    remaining = sum(weights)
    groups: list[tuple[str, list[T]]] = []
    start = 0
    while start < len(items):
        groups_left = count - len(groups)
        end, held = start, 0
        # The last group takes the rest; every other stops at its share, leaving an item per group after it.
        while end < len(items) and (
            groups_left == 1 or (held * groups_left < remaining and len(items) - end > groups_left - 1)
        ):
            held += weights[end]
            end += 1
        chunk = list(items[start:end])
        groups.append((group_label([name(item) for item in chunk]), chunk))
        remaining -= held
        start = end
    return groups
