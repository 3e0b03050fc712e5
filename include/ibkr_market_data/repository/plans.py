"""``planned_groups``: a run's plan, one row per mapped task's group of items.

Airflow gives every mapped task instance the whole list its upstream returned; the plan lives here
instead, and XCom carries only :class:`PlannedGroup` references. See docs/schema.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from ibkr_market_data.errors import PlanNotFoundError
from ibkr_market_data.payloads import PlannedGroupPayload
from ibkr_market_data.repository.collection_logs import RunContext

#: A plan is kept this long after it was written (for a late retry, and to read what a run planned).
PLAN_RETENTION = dt.timedelta(days=35)


@dataclass(frozen=True)
class PlannedGroup:
    """Where one mapped task finds its items: the run's group ``index``, shown as ``label``."""

    index: int
    label: str
    size: int

    def to_dict(self) -> PlannedGroupPayload:
        """Return the reference as the dict that travels through XCom."""
        return {"index": self.index, "label": self.label, "size": self.size}


def save_plan(
    conn: Connection, run: RunContext, groups: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]
) -> list[PlannedGroup]:
    """Replace the run's plan with ``groups`` and drop plans past the retention.

    :param groups: (label, items) per mapped task, in map index order.
    :return: the reference each mapped task is handed.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            "DELETE FROM planned_groups WHERE (dag_id = %s AND run_id = %s) OR planned_at < NOW() - %s",
            (run.dag_id, run.run_id, PLAN_RETENTION),
        )
        cursor.executemany(
            """
            INSERT INTO planned_groups (dag_id, run_id, group_index, label, items)
            VALUES (%s, %s, %s, %s, %s)
            """,
            [
                (run.dag_id, run.run_id, index, label, Jsonb(list(items)))
                for index, (label, items) in enumerate(groups)
            ],
        )
    return [PlannedGroup(index, label, len(items)) for index, (label, items) in enumerate(groups)]


def planned_group(conn: Connection, run: RunContext, index: int) -> list[dict[str, Any]]:
    """Return the items of the run's group ``index``.

    :raises PlanNotFoundError: the run has no such group (its plan was replaced or expired).
    """
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT items FROM planned_groups WHERE dag_id = %s AND run_id = %s AND group_index = %s",
            (run.dag_id, run.run_id, index),
        )
        row = cursor.fetchone()
    if row is None:
        raise PlanNotFoundError(
            f"Run {run.run_id} of {run.dag_id} has no planned group {index}: its plan task ran again "
            f"or the plan is older than {PLAN_RETENTION.days} days; clear the run's plan task"
        )
    return list(row[0])


def planned_items(conn: Connection, run: RunContext) -> list[dict[str, Any]]:
    """Return every item of the run's plan, group after group."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT item.value
            FROM planned_groups, jsonb_array_elements(items) WITH ORDINALITY AS item (value, position)
            WHERE dag_id = %s AND run_id = %s
            ORDER BY group_index, item.position
            """,
            (run.dag_id, run.run_id),
        )
        return [row[0] for row in cursor.fetchall()]
