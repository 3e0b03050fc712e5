"""What travels between tasks through XCom: JSON-shaped dicts (dates as ISO text), one TypedDict per kind.

It imports nothing, so a DAG file may name these types without loading the task code.
See docs/architecture.md.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class TargetPayload(TypedDict):
    """A ``daily_plan.CollectionTarget``: one request for one symbol."""

    symbol_id: int
    symbol: str
    exchange: str
    primary_exchange: str
    currency: str
    sec_type: str
    con_id: int
    session: str
    end_date_time: str
    duration: str
    bar_size: str
    first_session: str
    sessions: list[str]
    time_zone: str
    expected_bars: list[int]
    session_close: str
    derive: NotRequired[list[str]]
    session_opens: NotRequired[list[str]]
    cross_check: NotRequired[bool]


class CollectOutcomePayload(TypedDict):
    """What the daily DAG's ``collect`` did for one symbol."""

    symbol: str
    status: str
    records: int


class PlannedGroupPayload(TypedDict):
    """A ``repository.PlannedGroup``: where one mapped task finds its items in ``planned_groups``.

    Airflow hands each mapped task instance the whole list its upstream returned, so the mapped
    item is this reference, not the items themselves.
    """

    index: int
    label: str
    size: int


class GroupOutcomePayload(TypedDict):
    """What one mapped collect task did, counted by status over its symbols."""

    label: str
    symbols: int
    completed: int
    no_data: int
    skipped: int
    records: int


class BackfillRequestPayload(TypedDict):
    """A checked ``backfill_plan.BackfillRange``: the backfill DAG's validated params."""

    start: str
    end: str
    exchanges: list[str]
    symbols: list[str]
    dry_run: bool
    recheck_no_data: bool
    timeframe: str


class SymbolRowPayload(TypedDict):
    """A ``repository.SymbolRow``."""

    id: int
    symbol: str
    exchange: str
    primary_exchange: str
    currency: str
    sec_type: str
    con_id: int | None
    priority: int
    active: bool


class GapPayload(TypedDict):
    """One symbol with gaps in the backfill range, the backfill DAG's mapped item."""

    symbol_id: int
    symbol: str
    row: SymbolRowPayload
    start: str
    end: str
    missing: int
    runs: int
    requests: int
    recheck_no_data: bool
    timeframe: str


class GapOutcomePayload(TypedDict):
    """What the backfill DAG's ``collect_gap`` did for one symbol."""

    symbol: str
    status: str
    requests: int
    bars_collected: int
    bars_inserted: int
    bars_revised: int
    no_data_sessions: int
