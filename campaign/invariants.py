"""The campaign's invariants as pure functions: what IB serves, what the database holds -> a verdict.

Each takes plain values read from an independent source (the simulator's model and request log,
the database, Airflow's REST API), so each is tested with a negative control that it catches.
The definitions: docs/fault-campaign.md#what-is-checked.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

#: (symbol, timeframe, session): the unit every invariant counts in.
Key = tuple[str, str, dt.date]
#: A bar's values as stored: open, high, low, close, volume, wap, bar_count.
Values = tuple[Decimal, Decimal, Decimal, Decimal, int, Decimal | None, int | None]
#: One key's bars, by their ``market_data.timestamp``.
Bars = Mapping[dt.datetime, Values]

MISSING = "missing"
DIFFERS = "differs"
NOT_SERVED = "not served by IB"
NO_DATA_WRONGLY = "recorded as no data, IB has bars"

#: Task-instance states of a run that is over which mean work was left hanging.
HANGING_STATES = frozenset(
    {"queued", "scheduled", "running", "up_for_retry", "up_for_reschedule", "restarting", "deferred", None}
)
#: States of the last run of a date that mean its work was not done.
NOT_DONE_STATES = frozenset({"failed", "upstream_failed"})


@dataclass(frozen=True)
class Expected:
    """What IB serves for every key the runs cover: the bars (none where IB has none) and the whole keys.

    ``whole``: keys IB serves in full by their schedule (a daily bar; every intraday bar of the
    session). A key IB serves short or empty may be asked again to confirm it; a whole one, once
    stored, may not.
    """

    bars: Mapping[Key, Bars]
    whole: Collection[Key] = frozenset()


@dataclass(frozen=True)
class Snapshot:
    """What the database holds for the covered keys.

    ``stored_at``: per key, when its last-stored bar was first written (epoch seconds, from
    ``market_data.created_at``).
    """

    bars: Mapping[Key, Bars]
    stored_at: Mapping[Key, float] = field(default_factory=dict)
    no_data: Collection[Key] = frozenset()


@dataclass(frozen=True)
class Difference:
    """One way the database differs from what IB serves."""

    key: Key
    kind: str
    timestamp: dt.datetime | None = None

    def __str__(self) -> str:
        symbol, timeframe, session = self.key
        at = f" {self.timestamp:%Y-%m-%d %H:%M}" if self.timestamp is not None else ""
        return f"{symbol} {timeframe} {session}{at}: {self.kind}"


def lost(expected: Expected, snapshot: Snapshot) -> list[Difference]:
    """Return every difference between the stored bars of the covered keys and the bars IB serves.

    A bar missing, stored with other values, stored where IB serves none, or a key recorded as
    having no data although IB has bars.
    """
    differences: list[Difference] = []
    for key in sorted(expected.bars):
        served = expected.bars[key]
        stored = snapshot.bars.get(key, {})
        for timestamp in sorted(served):
            if timestamp not in stored:
                differences.append(Difference(key, MISSING, timestamp))
            elif not same_values(stored[timestamp], served[timestamp]):
                differences.append(Difference(key, DIFFERS, timestamp))
        differences += [Difference(key, NOT_SERVED, ts) for ts in sorted(set(stored) - set(served))]
        if served and key in snapshot.no_data:
            differences.append(Difference(key, NO_DATA_WRONGLY))
    return differences


def same_values(stored: Values, served: Values) -> bool:
    """Return whether two bars hold the same values (numbers compared as numbers, 8 places)."""
    return all(_same(a, b) for a, b in zip(stored, served, strict=True))


def _same(a: object, b: object) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        if a is None or b is None:
            return a is b
        return Decimal(str(a)).quantize(Decimal("1e-8")) == Decimal(str(b)).quantize(Decimal("1e-8"))
    return a == b


def silent(run_states: Sequence[str], differences_when_they_ended: Sequence[Difference]) -> int:
    """Return the bars missing or wrong when runs ended, if one of them ended green; else 0.

    A green run that leaves a bar missing is silent about it, whatever a later run mends.
    """
    return len(differences_when_they_ended) if "success" in run_states else 0


@dataclass(frozen=True)
class Request:
    """One historical request as the simulator logged it: when, what it covers, how it ended."""

    received_at: float
    symbol: str
    timeframe: str
    sessions: tuple[dt.date, ...]
    outcome: str = "bars"

    @property
    def keys(self) -> list[Key]:
        """Return the keys the request covers."""
        return [(self.symbol, self.timeframe, session) for session in self.sessions]


def needless_requests(
    requests: Iterable[Request], expected: Expected, snapshot: Snapshot, allowance: int = 0
) -> list[Request]:
    """Return the requests sent although every key they cover was already stored whole.

    A key counts as stored whole from the moment its bars, all of them and as IB serves them,
    were written. A scenario may explain ``allowance`` such requests per key (a backfill running
    beside the daily run asks for the same sessions); only those beyond it are returned.
    """
    complete = {
        key: snapshot.stored_at[key]
        for key in expected.whole
        if key in snapshot.stored_at
        and expected.bars.get(key)
        and set(snapshot.bars.get(key, {})) >= set(expected.bars[key])
    }
    charged: Counter[Key] = Counter()
    needless = []
    for request in sorted(requests, key=lambda r: r.received_at):
        keys = request.keys
        if not keys or not all(key in complete and complete[key] < request.received_at for key in keys):
            continue
        charged.update(keys)
        if any(charged[key] > allowance for key in keys):
            needless.append(request)
    return needless


def repeats(requests: Iterable[Request]) -> int:
    """Return the requests beyond the first per key: every repeat, needed or not (a figure, not a verdict)."""
    per_key: Counter[Key] = Counter()
    for request in requests:
        per_key.update(request.keys)
    return sum(count - 1 for count in per_key.values() if count > 1)


@dataclass(frozen=True)
class Revision:
    """One ``bar_revisions`` row: a stored bar's old and new values."""

    key: Key
    timestamp: dt.datetime
    old: Values
    new: Values


def fake_revisions(
    revisions: Iterable[Revision],
    served_versions: Mapping[tuple[Key, dt.datetime], Collection[Values]],
    defective_symbols: Collection[str] = (),
) -> list[Revision]:
    """Return the revision rows that are not real revisions.

    A revision is real when the values changed and IB served both: the old ones at some moment
    (a preliminary bar, or a bar a data-defect fault spoiled: ``defective_symbols``), the new ones
    later. ``served_versions`` holds every version IB served of each bar.
    """
    fake = []
    for revision in revisions:
        versions = served_versions.get((revision.key, revision.timestamp), ())
        old_served = revision.key[0] in defective_symbols or any(
            same_values(revision.old, v) for v in versions
        )
        new_served = any(same_values(revision.new, v) for v in versions)
        if same_values(revision.old, revision.new) or not old_served or not new_served:
            fake.append(revision)
    return fake


@dataclass(frozen=True)
class TaskState:
    """A task instance of a run as Airflow's REST API shows it."""

    run_id: str
    task_id: str
    map_index: int
    state: str | None
    label: str = ""


def unfinished(
    tasks: Iterable[TaskState], last_run_id: str, pending_attempts: Mapping[str, int]
) -> list[str]:
    """Return what the runs left unfinished, each as a short text.

    From Airflow: a task of an ended run still queued, running or waiting for a retry, or a task
    of the date's last run that failed. From ``collection_logs``: per run, the symbols whose latest
    attempt is still ``pending``.
    """
    found = []
    for task in tasks:
        name = f"{task.task_id}[{task.label or task.map_index}]" if task.map_index >= 0 else task.task_id
        if task.state in HANGING_STATES:
            found.append(f"{name} of {task.run_id} left {task.state}")
        elif task.run_id == last_run_id and task.state in NOT_DONE_STATES:
            found.append(f"{name} of the last run {task.state}")
    found += [f"{count} attempts of {run} still pending" for run, count in pending_attempts.items() if count]
    return found


@dataclass(frozen=True)
class RuleBreach:
    """One IB rule a client broke, as the simulator recorded it."""

    rule: str
    client_id: int | None


def rules_broken(
    breaches: Iterable[RuleBreach], expected_rules: Collection[str], held_client_ids: Collection[int]
) -> tuple[list[RuleBreach], list[RuleBreach]]:
    """Split the breaches into (broken, refused by design).

    A breach is by design only when the scenario expects its rule and it concerns a client id an
    outside client held: IB refusing such an id is the fault itself, any other breach is the
    collector's.
    """
    broken, by_design = [], []
    for breach in breaches:
        if breach.rule in expected_rules and breach.client_id in held_client_ids:
            by_design.append(breach)
        else:
            broken.append(breach)
    return broken, by_design
