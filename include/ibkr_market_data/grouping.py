"""Group a run's symbols into at most a configured number of mapped task instances.

Up to the limit each instance is one symbol; beyond it, contiguous groups of near-equal size whose
map index is ``FIRST…LAST (N)``, each collecting concurrently on one connection. See docs/daily-dag.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from ibkr_market_data.errors import GroupingConfigError

T = TypeVar("T")

MAX_MAPPED_TASKS_VARIABLE = "IBKR_MAX_MAPPED_TASKS"
#: Task instances a run expands to at most, unless ``IBKR_MAX_MAPPED_TASKS`` says otherwise.
DEFAULT_MAX_MAPPED_TASKS = 256
#: Airflow's ``[core] max_map_length`` default: a mapped task never expands past it.
AIRFLOW_MAX_MAP_LENGTH = 1024
#: IB's limit on historical requests open at once, per TWS / IB Gateway.
IB_OPEN_HISTORICAL_REQUESTS = 50
#: Open requests left to what runs outside the pool (a backfill's head timestamps, an operator's TWS).
OPEN_REQUESTS_RESERVE = 2


def max_mapped_tasks(environ: Mapping[str, str] = os.environ) -> int:
    """Return the most task instances a run may expand to, checked against Airflow's ``max_map_length``."""
    text = environ.get(MAX_MAPPED_TASKS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_MAPPED_TASKS
    if not text.isdigit() or not 1 <= int(text) <= AIRFLOW_MAX_MAP_LENGTH:
        raise GroupingConfigError(
            f"{MAX_MAPPED_TASKS_VARIABLE} is {text!r}; give a whole number from 1 to "
            f"{AIRFLOW_MAX_MAP_LENGTH} (Airflow's max_map_length)"
        )
    return int(text)


def in_flight_per_connection(pool_slots: int) -> int:
    """Return the requests one group may have open: times the pool's slots, they stay under IB's 50."""
    if pool_slots < 1:
        raise ValueError(f"the ibkr pool needs at least one slot, not {pool_slots}")
    return max(1, (IB_OPEN_HISTORICAL_REQUESTS - OPEN_REQUESTS_RESERVE) // pool_slots)


def group_label(names: Sequence[str]) -> str:
    """Return the map index of a group: its one symbol, or ``FIRST…LAST (N)``."""
    if len(names) == 1:
        return names[0]
    return f"{names[0]}…{names[-1]} ({len(names)})"


def group_items(
    items: Sequence[T], max_instances: int, name: Callable[[T], str]
) -> list[tuple[str, list[T]]]:
    """Cut ``items`` into at most ``max_instances`` contiguous groups of near-equal size, each labelled."""
    if max_instances < 1:
        raise ValueError(f"max_instances must be at least 1, not {max_instances}")
    count = min(len(items), max_instances)
    if not count:
        return []
    size, bigger = divmod(len(items), count)
    groups: list[tuple[str, list[T]]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < bigger else 0)
        chunk = list(items[start:end])
        groups.append((group_label([name(item) for item in chunk]), chunk))
        start = end
    return groups
