"""Symbols per mapped task: a run never expands past a configured number of task instances.

Airflow refuses to expand a mapped task past ``max_map_length`` (1,024), and each task instance
costs about half a CPU-second of Airflow's own work (scheduler, executor, API server, task
process) whatever it does. So the plan's items are grouped:

* up to ``max_instances`` items, each instance is one item, exactly as without grouping (its map
  index is the symbol);
* beyond, the items are cut in stable order into ``max_instances`` contiguous groups of near-equal
  size, and the map index names the group: ``AAPL…AMZN (12)``.

A group collects its symbols concurrently over its one IB connection, at most
:func:`in_flight_per_connection` requests open at once, so that across every slot of the ``ibkr``
pool the open requests stay under IB's 50 open historical requests.
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
    """The configured most task instances per run, checked against Airflow's ``max_map_length``."""
    text = environ.get(MAX_MAPPED_TASKS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_MAPPED_TASKS
    if not text.isdigit() or not 1 <= int(text) <= AIRFLOW_MAX_MAP_LENGTH:
        raise GroupingConfigError(
            f"{MAX_MAPPED_TASKS_VARIABLE} is {text!r}; give a whole number from 1 to {AIRFLOW_MAX_MAP_LENGTH} "
            "(Airflow's max_map_length)"
        )
    return int(text)


def in_flight_per_connection(pool_slots: int) -> int:
    """Requests one group may have open on its connection: the pool's slots times this stay under IB's 50."""
    if pool_slots < 1:
        raise ValueError(f"the ibkr pool needs at least one slot, not {pool_slots}")
    return max(1, (IB_OPEN_HISTORICAL_REQUESTS - OPEN_REQUESTS_RESERVE) // pool_slots)


def group_label(names: Sequence[str]) -> str:
    """The map index of a group: its one symbol, or ``FIRST…LAST (N)``."""
    if len(names) == 1:
        return names[0]
    return f"{names[0]}…{names[-1]} ({len(names)})"


def group_items(
    items: Sequence[T], max_instances: int, name: Callable[[T], str]
) -> list[tuple[str, list[T]]]:
    """``items`` cut into at most ``max_instances`` contiguous groups of near-equal size, each with its label."""
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
