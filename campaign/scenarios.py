"""The fault scenarios of ``make faults``: what each injects into a real daily run, and when.

A scenario acts ``before``, ``during`` or ``after`` the run on a :class:`~campaign.run.Campaign`,
and returns a short text of what it did; its proof that it fired is read or recorded on the way.
See docs/fault-campaign.md#adding-a-scenario.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tws_simulator.rules import RULE_DUPLICATE_CLIENT_ID

if TYPE_CHECKING:
    from campaign.run import Campaign

#: ``(campaign, run_id) -> what was done``
Action = Callable[["Campaign", str], str]


def nothing(campaign: Campaign, run_id: str) -> str:
    """Do nothing: a scenario's default action."""
    return ""


_nothing = nothing


@dataclass(frozen=True)
class Scenario:
    """One fault: what to break before, during and after a daily run, and what it is expected to meet."""

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
    #: Simulator rules this scenario's fault makes the collector meet by design, counted apart: only
    #: for the client ids an outside client held (``Campaign.held_client_ids``).
    expected_refusals: tuple[str, ...] = field(default_factory=tuple)
    #: The executors the scenario means something on.
    executors: tuple[str, ...] = ("local", "celery")
    #: Requests per (symbol, timeframe, session) stored whole that the fault explains (e.g. a backfill
    #: beside the daily run asks for the same sessions); any beyond it is needless work.
    repeat_allowance: int = 0
    #: Whether ``make soak`` may draw it: not when it is pinned to the campaign's trading date.
    in_soak: bool = True


def _fault(**settings: object) -> Action:
    def inject(campaign: Campaign, run_id: str) -> str:
        campaign.inject(None, **settings)
        return ", ".join(f"{name}={value}" for name, value in settings.items()) + " on every symbol"

    return inject


def _sim_faults(faults: dict[str, dict[str, Any]], market_now: dt.datetime | None = None) -> Action:
    """Return an action setting ``faults`` (as ``IBKR_SIM_FAULTS`` holds them) and the market's clock."""

    def inject(campaign: Campaign, run_id: str) -> str:
        for symbol, settings in faults.items():
            campaign.simulator.faults.set(symbol, **settings)
        text = f"IBKR_SIM_FAULTS='{json.dumps(faults)}'"
        if market_now is not None:
            campaign.set_market_clock(market_now)
            text = f"IBKR_SIM_NOW={market_now:%Y-%m-%dT%H:%M} " + text
        return text

    return inject


def _fired(proof: Callable[[Campaign], str], clear: bool = True) -> Action:
    """Return an ``after`` action: the proof that the fault fired (for the results), then a clean market.

    :param clear: False for a market property (a session without a trade, a split): it stays the truth
        the run is checked against, until the next scenario starts clean.
    """

    def after(campaign: Campaign, run_id: str) -> str:
        text = proof(campaign)
        if clear:
            _clear_faults(campaign, run_id)
        return f"fired: {text}"

    return after


def _requests_failed_with(text: str) -> Callable[[Campaign], str]:
    def proof(campaign: Campaign) -> str:
        records = campaign.simulator.request_log.historical()
        hit = [record for record in records if text in record.error_message]
        return f"{len(hit)} of {len(records)} historical requests answered '{text}'"

    return proof


def _requests_with_outcome(outcome: str) -> Callable[[Campaign], str]:
    def proof(campaign: Campaign) -> str:
        records = campaign.simulator.request_log.historical()
        hit = [record for record in records if record.outcome == outcome]
        return f"{len(hit)} of {len(records)} historical requests {outcome}"

    return proof


def _counts_used(name: str, given: int) -> Callable[[Campaign], str]:
    def proof(campaign: Campaign) -> str:
        left = campaign.simulator.faults.snapshot().get("*", {}).get(name, 0)
        return f"{name} fired {given - left} of {given} times"

    return proof


def _slowest_answer(campaign: Campaign) -> str:
    waits = [
        (record.answered_at - record.received_at).total_seconds()
        for record in campaign.simulator.request_log.historical()
        if record.answered_at is not None
    ]
    return f"slowest historical answer {max(waits, default=0):.1f} s ({campaign.latency_ms} ms fixed)"


def _halted_minutes(campaign: Campaign) -> str:
    served, now = campaign.simulator.served, campaign.simulator.simulator.now()
    symbol = next(listing.symbol for listing in campaign.universe if listing.primary_exchange != "ASX")
    minutes = served.intraday_bars(symbol, TRADING_DAY, 60, True, now)
    return f"{symbol} served {len(minutes)} of 390 minutes on {TRADING_DAY}; its daily bar unchanged"


def _sessions_without_trade(campaign: Campaign) -> str:
    import psycopg

    served = campaign.simulator.served
    missing = [
        listing.symbol
        for listing in campaign.universe
        if campaign.simulator.model.sessions(listing.symbol, DAY_BEFORE, DAY_BEFORE)
        and not served.traded(listing.symbol, DAY_BEFORE)
    ]
    with psycopg.connect(campaign.market_db) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FILTER (WHERE settled_at IS NOT NULL), COUNT(*) FROM no_data_sessions"
            " WHERE session = %s",
            (DAY_BEFORE,),
        ).fetchone()
    settled, recorded = row if row else (0, 0)
    return (
        f"{len(missing)} symbols without a trade on {DAY_BEFORE} in the model; "
        f"{recorded} recorded no data, {settled} settled"
    )


def _preliminary_bars(campaign: Campaign) -> str:
    served, now = campaign.simulator.served, campaign.simulator.simulator.now()
    preliminary = 0
    for listing in campaign.universe:
        contract = served.contract(listing.symbol, now)
        if contract is not None and not served.view(contract, now).is_final(TRADING_DAY):
            preliminary += 1
    return f"{preliminary} symbols' {TRADING_DAY} bars served preliminary as of {now:%Y-%m-%d %H:%M} UTC"


def _split_served(campaign: Campaign) -> str:
    served, now = campaign.simulator.served, campaign.simulator.simulator.now()
    contract = served.contract(SPLIT_SYMBOL, now)
    factor = served.view(contract, now).split_factor() if contract is not None else 0
    return f"{SPLIT_SYMBOL}'s history served on a basis {factor} times smaller"


def _clear_faults(campaign: Campaign, run_id: str) -> str:
    campaign.clear_faults()
    return ""


def _restart_gateway(down_seconds: float) -> Action:
    def restart(campaign: Campaign, run_id: str) -> str:
        cut = campaign.restart_simulator(down_seconds)
        return (
            f"gateway stopped mid-run ({cut} requests open), restarted on the same port "
            f"{down_seconds:.0f} s later"
        )

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
        waiting = campaign.lock_market_data(seconds)
        return (
            f"another session holds an exclusive lock on market_data for {seconds:.0f} s "
            f"({waiting} sessions waited)"
        )

    return lock


def _restart_market_server(down_seconds: float) -> Action:
    def restart(campaign: Campaign, run_id: str) -> str:
        sessions = campaign.restart_market_server(down_seconds)
        return (
            f"market-data server stopped mid-run ({sessions} sessions cut), "
            f"started again {down_seconds:.0f} s later"
        )

    return restart


def _refuse_market_connections(seconds: float) -> Action:
    def refuse(campaign: Campaign, run_id: str) -> str:
        campaign.refuse_market_connections(seconds)
        return f"market-data server down when the run is triggered, up {seconds:.0f} s later"

    return refuse


def _prove_tries_refused(campaign: Campaign, run_id: str) -> str:
    campaign.prove_tries_refused("daily_market_data", run_id)
    return ""


def _statement_timeout(milliseconds: int | None) -> Action:
    def set_timeout(campaign: Campaign, run_id: str) -> str:
        campaign.set_statement_timeout(milliseconds)
        if milliseconds is None:
            return ""
        return f"market-data sessions given statement_timeout={milliseconds} ms"

    return set_timeout


def _restart_scheduler(down_seconds: float) -> Action:
    def restart(campaign: Campaign, run_id: str) -> str:
        killed = campaign.restart_scheduler(down_seconds)
        return f"{killed} SIGKILLed mid-run with its task processes, restarted {down_seconds:.0f} s later"

    return restart


def _kill_celery_worker(campaign: Campaign, run_id: str) -> str:
    name = campaign.kill_a_celery_worker()
    return f"Celery {name} SIGKILLed mid-run with its running tasks, started again"


def _kill_task_process(campaign: Campaign, run_id: str) -> str:
    killed = campaign.kill_a_collect_task_process()
    return f"SIGKILL to a running collect task's process ({killed})"


#: Answer latency of the overlapping-backfill scenario: collect tasks with more requests run longer.
OVERLAP_LATENCY_MS = 2000

#: The campaign's trading date (campaign.run.TRADING_DATE), the day before it and the market's clock
#: the morning after it in UTC: both exchanges closed, the date's bars still preliminary.
TRADING_DAY = dt.date(2025, 1, 15)
DAY_BEFORE = dt.date(2025, 1, 14)
MORNING_AFTER = dt.datetime(2025, 1, 16, 2, 0, tzinfo=dt.UTC)
SPLIT_SYMBOL = "SQQQ"

#: IB's bad days (docs/ib-behaviours.md): one scenario per behaviour the collector must handle.
HARSH_IB_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "sessions without a trade (illiquid_sessions)",
        "IB",
        before=_sim_faults({"*": {"illiquid_sessions": [DAY_BEFORE.isoformat()]}}),
        after=_fired(_sessions_without_trade, clear=False),
        in_soak=False,
        notes="every symbol skips the session before the date: recorded as no data, not settled by one "
        "answer; the next run that leaves it out again settles it (test_harsh_ib_sessions.py)",
    ),
    Scenario(
        "trading halts and quiet minutes (halts, illiquid_minutes)",
        "IB",
        before=_sim_faults(
            {
                "*": {
                    "halts": {"date": TRADING_DAY.isoformat(), "from": "11:00", "to": "13:30"},
                    "illiquid_minutes": 0.2,
                }
            }
        ),
        after=_fired(_halted_minutes, clear=False),
        in_soak=False,
        notes="the minutes inside the halt and the quiet ones have no bar; the daily bar is unchanged and "
        "every other minute is stored as IB serves it (tests/integration/test_harsh_ib_sessions.py too)",
    ),
    Scenario(
        "late corrections: the date's bars preliminary (late_correction_days)",
        "IB",
        before=_sim_faults({"*": {"late_correction_days": 2}}, market_now=MORNING_AFTER),
        after=_fired(_preliminary_bars, clear=False),
        in_soak=False,
        notes="IB answers as of the morning after: the preliminary bars are stored as served; later runs' "
        "lookback revises them (tests/integration/test_harsh_ib_sessions.py)",
    ),
    Scenario(
        "split re-basing history (split)",
        "IB",
        before=_sim_faults(
            {SPLIT_SYMBOL: {"split": {"date": DAY_BEFORE.isoformat(), "ratio": 4}}}, MORNING_AFTER
        ),
        after=_fired(_split_served, clear=False),
        in_soak=False,
        notes="the window's bars arrive on the new basis; no session is taken for no data",
    ),
    Scenario(
        "HMDS farm broken, answers stalled past the request timeout (hmds_farm_stall)",
        "IB",
        during=_sim_faults({"*": {"hmds_farm_stall": 1, "outage_ms": 15_000}}),
        after=_fired(_requests_with_outcome("cancelled")),
        notes="2105 to every client; answers wait for 2106 (15 s, past the 10 s request_timeout): the hook "
        "sends each timed-out request again once the farm is back",
    ),
    Scenario(
        "HMDS farm broken, requests failing with 162 (hmds_farm_fail)",
        "IB",
        during=_sim_faults({"*": {"hmds_farm_fail": 1, "outage_ms": 5_000}}),
        after=_fired(_requests_failed_with("farm connection is broken")),
        notes="162 'HMDS data farm connection is broken' until 2106: sent again after it, never no data",
    ),
    Scenario(
        "connect notices and an account sync slower than connect_timeout",
        "IB",
        before=_sim_faults({"*": {"connect_notices": True, "account_sync_ms": 20_000}}),
        after=_fired(
            lambda campaign: "every connection: 2104/2106/2158, a 20 s account sync (connect_timeout 5 s)"
        ),
        notes="the hook waits for the API handshake only",
    ),
    Scenario(
        "wire mess: shuffled, duplicated and split answers",
        "IB",
        during=_sim_faults({"*": {"bars_out_of_order": True, "duplicate_bar": True, "split_answer": 4}}),
        after=_fired(_counts_used("split_answer", 4)),
        notes="4 answers lose their newest bar (the date's) past historicalDataEnd: each asked again at once "
        "in its attempt and stored whole by the run itself (ib-behaviours.md#a-short-tail-asked-again)",
    ),
    Scenario(
        "IB's HMDS queue: latency grows with open requests (latency_per_open_request_ms)",
        "IB",
        during=_sim_faults({"*": {"latency_per_open_request_ms": 200}}),
        after=_fired(_slowest_answer),
    ),
)

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
        "IB connectivity lost, restored with data kept (1100, 1102)",
        "IB",
        during=_fault(connectivity_lost=1, outage_ms=5000),
        after=_clear_faults,
        notes="new requests pause until 1102; open ones are answered after it",
    ),
    Scenario(
        "IB connectivity lost, restored with data lost (1100, 1101)",
        "IB",
        during=_fault(connectivity_lost_data_lost=1, outage_ms=5000),
        after=_clear_faults,
        notes="requests open across the outage are never answered; the hook sends them again on 1101",
    ),
    Scenario(
        "data-farm notices during the run (2103/2105/2157 broken, 2104/2106/2158 OK, 2107)",
        "IB",
        during=_fault(farm_notices=True),
        after=_clear_faults,
        notes="every answer from then on is preceded by the farm flap; notices fail nothing",
    ),
    Scenario(
        "pacing storm (162 pacing violation, 322)",
        "IB",
        during=_fault(pacing_violation=6, open_requests_refused=6),
        after=_clear_faults,
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
        notes="the run asks IB again after a 162 and stores the bars before it ends green",
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
        "market-data server restarted mid-run",
        "PostgreSQL",
        during=_restart_market_server(5),
        notes="a throwaway server of the campaign's own, never the machine's shared one",
    ),
    Scenario(
        "market-data server refusing connections when the run starts",
        "PostgreSQL",
        before=_refuse_market_connections(20),
        after=_prove_tries_refused,
    ),
    Scenario(
        "a lock on market_data held 40 s (production: no statement timeout)",
        "PostgreSQL",
        during=_lock_market_data(40),
        notes="production's configuration has no statement timeout: writes wait for the lock, "
        "then go on; nothing fails",
    ),
    Scenario(
        "a lock on market_data held past a 10 s statement timeout (the documented option)",
        "PostgreSQL",
        before=_statement_timeout(10_000),
        during=_lock_market_data(40),
        after=_statement_timeout(None),
        notes="with the option set (docs/configuration.md#database-timeouts), writes give up after "
        "10 s, the attempt is recorded failed with the database's reason, and the task's retry "
        "writes once the lock is gone",
    ),
    Scenario("task process SIGKILLed mid-request", "Airflow", during=_kill_task_process),
    Scenario(
        "scheduler killed and restarted mid-run",
        "Airflow",
        during=_restart_scheduler(5),
        notes="LocalExecutor: the killed scheduler's tasks (queued, or running in its task processes) stay "
        "as they were until the new scheduler's orphan check ([scheduler] orphaned_tasks_check_interval, "
        "300 s by default) finds that scheduler dead, resets them, and they run again. CeleryExecutor: the "
        "tasks run on the workers and go on; the new scheduler adopts them (no retry)",
    ),
    Scenario(
        "a Celery worker killed mid-run",
        "Airflow",
        during=_kill_celery_worker,
        executors=("celery",),
    ),
    Scenario(
        "the same date triggered twice (max_active_runs=1 queues the second)",
        "Airflow",
        double_trigger=True,
        notes="the daily DAG runs one run at a time, so the second waits for the first and finds "
        "the date stored: it must ask IB for nothing. The runs that do overlap: the next scenario",
    ),
    Scenario(
        "daily run and an overlapping backfill at once",
        "Airflow",
        before=_fault(latency_ms=OVERLAP_LATENCY_MS),
        overlapping_backfill=True,
        repeat_allowance=1,
        notes="the backfill's collect tasks run beside the daily run's; each reads what is stored before it "
        "asks, so a session the other run stored first is not asked again, and one both ask for at once "
        "is one repeat, explained. The two runs share the ibkr pool, which a "
        "12-symbol daily run fills alone; with every answer taking "
        f"{OVERLAP_LATENCY_MS / 1000:g} s the daily run's collect tasks end apart, and the backfill's take "
        "the freed slots beside those still running",
    ),
    *HARSH_IB_SCENARIOS,
)
