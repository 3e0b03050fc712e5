"""The fault scenarios of ``make faults``: what each injects into a real daily run, and when.

A scenario may act before the run is triggered (``before``), once collect tasks are running
(``during``), and after the run ended (``after``, to take the fault away). Each returns a short
text of what it did, for the results table. They act on a :class:`~campaign.run.Campaign`: its
Airflow stack, its simulator (restartable on the same port) and its market-data database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tws_simulator.rules import RULE_DUPLICATE_CLIENT_ID

if TYPE_CHECKING:
    from campaign.run import Campaign

#: ``(campaign, run_id) -> what was done``
Action = Callable[["Campaign", str], str]


def _nothing(campaign: Campaign, run_id: str) -> str:
    return ""


@dataclass(frozen=True)
class Scenario:
    name: str
    area: str  # IB | PostgreSQL | Airflow
    before: Action = _nothing
    during: Action = _nothing
    after: Action = _nothing
    #: Also trigger the backfill DAG over the run's date while the run goes on.
    overlapping_backfill: bool = False
    #: Trigger the same date twice at once.
    double_trigger: bool = False
    notes: str = ""
    #: Simulator rules this scenario's fault makes the collector meet by design, counted apart.
    expected_refusals: tuple[str, ...] = field(default_factory=tuple)


def _fault(**settings: object) -> Action:
    def inject(campaign: Campaign, run_id: str) -> str:
        campaign.simulator.faults.set(None, **settings)
        return ", ".join(f"{name}={value}" for name, value in settings.items()) + " on every symbol"

    return inject


def _clear_faults(campaign: Campaign, run_id: str) -> str:
    campaign.simulator.faults.clear_all()
    campaign.simulator.faults.set(None, latency_ms=campaign.latency_ms)
    return ""


def _restart_gateway(down_seconds: float) -> Action:
    def restart(campaign: Campaign, run_id: str) -> str:
        campaign.restart_simulator(down_seconds)
        return f"gateway stopped mid-run, restarted on the same port {down_seconds:.0f} s later"

    return restart


def _hold_client_ids(count: int) -> Action:
    def hold(campaign: Campaign, run_id: str) -> str:
        campaign.hold_client_ids(range(1, count + 1))
        return f"an outside client holds client ids 1..{count}"

    return hold


def _release_client_ids(campaign: Campaign, run_id: str) -> str:
    campaign.release_client_ids()
    return ""


def _lock_market_data(seconds: float) -> Action:
    def lock(campaign: Campaign, run_id: str) -> str:
        campaign.lock_market_data(seconds)
        return f"another session holds an exclusive lock on market_data for {seconds:.0f} s"

    return lock


def _kill_task_process(campaign: Campaign, run_id: str) -> str:
    killed = campaign.kill_a_collect_task_process()
    return f"SIGKILL to a running collect task's process ({killed})"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("baseline: no fault", "IB"),
    Scenario(
        "connections dropped mid-request",
        "IB",
        during=_fault(drop_connection=4),
        after=_clear_faults,
        notes="the next 4 requests lose their socket",
    ),
    Scenario(
        "gateway killed and restarted on the same port",
        "IB",
        during=_restart_gateway(5),
        notes="every connection and open request is lost",
    ),
    Scenario(
        "nightly gateway restart inside the run",
        "IB",
        during=_restart_gateway(45),
        notes="down 45 s, as IB Gateway's daily restart",
    ),
    Scenario(
        "pacing storm (162 pacing violation)", "IB", during=_fault(pacing_violation=6), after=_clear_faults
    ),
    Scenario(
        "requests that never answer",
        "IB",
        during=_fault(never_answer=3),
        after=_clear_faults,
        notes="the hook's request_timeout cancels them",
    ),
    Scenario("corrupt bars", "IB", during=_fault(corrupt_bars=2), after=_clear_faults),
    Scenario(
        "transient no data (162 HMDS no data)",
        "IB",
        during=_fault(no_data=2),
        after=_clear_faults,
        notes="a later run must ask again",
    ),
    Scenario(
        "outside client holds client ids (326)",
        "IB",
        before=_hold_client_ids(8),
        after=_release_client_ids,
        expected_refusals=(RULE_DUPLICATE_CLIENT_ID,),
        notes="IB refuses a connection on an id the outside client holds (326) and the hook takes the "
        "next id: those refusals are counted apart, not as rules broken",
    ),
    Scenario(
        "a lock on market_data held by another session",
        "PostgreSQL",
        during=_lock_market_data(40),
        notes="writes wait for the lock; nothing fails or is written twice",
    ),
    Scenario("task process SIGKILLed mid-request", "Airflow", during=_kill_task_process),
    Scenario("two triggers of one date at once", "Airflow", double_trigger=True),
    Scenario("daily run and an overlapping backfill at once", "Airflow", overlapping_backfill=True),
)
