"""``make faults``: each fault scenario against a real daily run, what it cost, and proof that it fired.

One Airflow stack, one TWS simulator and one throwaway market-data server serve every scenario;
results go to ``campaign/results.md``. The setup, the invariants and their negative controls:
docs/fault-campaign.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from campaign import evidence, invariants, observe
from campaign.evidence import Answer, Proof, SimulatorTrace
from campaign.invariants import Difference, Expected, Snapshot, TaskState
from campaign.scenarios import SCENARIOS, Scenario, nothing
from ibkr_market_data import schema
from ibkr_market_data.settings import DAILY_LOOKBACK_SESSIONS
from ibkr_market_data.timeframes import policy_from_env
from ibkr_market_data.universe import load_universe
from ibkr_market_data_dev import local_postgres
from ibkr_market_data_dev.airflow_stack import AirflowStack, AirflowStackError
from ibkr_market_data_dev.local_env import REPO_ROOT, celery_broker_url
from ibkr_market_data_dev.simulated_ib import simulator_config
from ibkr_market_data_dev.throwaway_postgres import ThrowawayPostgres
from tws_simulator.request_log import RequestRecord
from tws_simulator.rules import Violation
from tws_simulator.testing import SimulatorThread

log = logging.getLogger("campaign")

CAMPAIGN_DIR = Path(__file__).resolve().parent
DAILY = "daily_market_data"
BACKFILL = "backfill_market_data"
#: A Wednesday both the ASX and the US traded.
TRADING_DATE = dt.date(2025, 1, 15)
#: Tables a scenario starts without (symbols stay loaded).
RESET_TABLES = (
    "ib_pacing_ledger",
    "collection_logs",
    "bar_revisions",
    "no_data_sessions",
    "short_sessions",
    "market_data",
    "planned_groups",
)
#: The documented option a scenario turns on: a write stuck behind a lock gives up after this long.
STATEMENT_TIMEOUT_MS = 10_000
#: How long a run may take, retries included, before the campaign stops waiting for it.
RUN_TIMEOUT_SECONDS = 1800


@dataclass
class Outcome:
    """One scenario's result: what was injected, the proof it fired, how the run recovered, what was lost."""

    scenario: str
    area: str
    injected: str
    fired: str
    fired_ok: bool
    first_run: str
    recovered_by: str
    tasks_retried: int
    bars_compared: int
    bars_lost: int
    silent: int
    ib_requests: int
    repeat_requests: int
    needless_requests: int
    fake_revisions: int
    unfinished: int
    ib_rules_broken: int
    expected_refusals: int
    seconds_to_recover: float | None
    notes: str
    #: Of the bars lost: sessions recorded as no data although IB serves bars for them.
    false_no_data: int = 0
    #: The first few findings of each invariant that failed, for the results' notes.
    findings: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when the fault fired and every invariant holds."""
        return is_clean(asdict(self))


def is_clean(outcome: dict[str, Any]) -> bool:
    """Return whether an outcome (as stored in results.json) proves its fault fired and breaks nothing."""
    return bool(outcome["fired_ok"]) and not any(outcome[name] for name in INVARIANT_FIELDS)


#: The invariants' counts, each of which must be 0.
INVARIANT_FIELDS = (
    "bars_lost",
    "silent",
    "needless_requests",
    "fake_revisions",
    "unfinished",
    "ib_rules_broken",
)


@dataclass
class Verdict:
    """Every invariant of a moment, from the simulator, the database and Airflow."""

    expected: Expected
    snapshot: Snapshot
    differences: list[Difference]
    requests: list[invariants.Request]
    needless: list[invariants.Request]
    fake_revisions: list[invariants.Revision]
    unfinished: list[str]
    broken: list[invariants.RuleBreach]
    by_design: list[invariants.RuleBreach]
    changed_by_properties: int


@dataclass
class _SimulatorTrail:
    """What a stopped simulator saw during the scenario (a gateway restart replaces the simulator)."""

    records: list[RequestRecord]
    notices: list[int]
    fired: dict[str, int]
    residual: dict[str, dict[str, Any]]
    violations: list[Violation]


class Campaign:
    """The stack, simulator and database every scenario acts on."""

    def __init__(
        self,
        symbols: int,
        latency_ms: int,
        request_timeout: int,
        executor: str = "local",
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.executor = executor
        self.latency_ms = latency_ms
        self.request_timeout = request_timeout
        self.universe = _campaign_universe(symbols)
        self.policy = policy_from_env()
        self.lookback = DAILY_LOOKBACK_SESSIONS
        self.clock = clock
        self._resources = ExitStack()
        self._outside_clients: list[Any] = []
        self._background: list[threading.Thread] = []
        self.simulator = self._start_simulator(port=0)
        self.port = self.simulator.port
        self._trails: list[_SimulatorTrail] = []  # simulators stopped during this scenario
        self._violations_at_start = 0  # the running simulator's count when the scenario began
        #: Proofs the scenario's actions gave of faults outside the simulator (processes, servers).
        self.proofs: list[Proof] = []
        #: Client ids an outside client holds in this scenario: IB refusing them is by design.
        self.held_client_ids: set[int] = set()
        self.current_run = ""
        #: The runs of the last scenario, (dag_id, run_id), the daily run first.
        self.last_runs: list[tuple[str, str]] = []
        self._down_until: float | None = None
        #: Negative controls: breakages a control applies after a run (see campaign/controls.py).
        self.breaks: list[Callable[[Campaign, str], str]] = []
        #: Earlier moments whose served bars count as versions IB served (the soak adds each run's).
        self.served_moments: list[dt.datetime] = []

    # -- set-up --------------------------------------------------------------------------------

    def __enter__(self) -> Campaign:
        try:
            return self._set_up()
        except BaseException:
            self.__exit__()  # a set-up that fails half way leaves no stack or server behind
            raise

    def _set_up(self) -> Campaign:
        self.market_server = ThrowawayPostgres()
        self._resources.callback(self.market_server.remove)
        self.market_server.start()
        self.market_db = local_postgres.create_database(
            self.market_server.url, prefix="ibkr_market_data_faults"
        )
        self.market_db_name = self.market_db.rsplit("/", 1)[1].split("?")[0]
        server = local_postgres.server_url()
        metadata_db = local_postgres.create_database(server)
        self._resources.callback(local_postgres.drop_database, metadata_db)
        schema.upgrade(self.market_db)
        self._load_symbols()
        home = Path(tempfile.mkdtemp(prefix="ibkr-market-data-faults-"))
        self.stack = AirflowStack(
            home,
            port=_free_port(),
            executor=self.executor,
            broker_url=celery_broker_url() if self.executor == "celery" else None,
            separate=True,
            env={
                # The production configuration: no statement timeout (one scenario sets it apart).
                "AIRFLOW_CONN_MARKET_DATA_DB": self.market_db,
                "AIRFLOW_CONN_IBKR_DEFAULT": self.ibkr_uri,
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": schema.sqlalchemy_url(metadata_db),
                # Give up on a silent task, or one queued with no taker, in seconds rather than minutes.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            },
        )
        self._resources.enter_context(self.stack)
        self.stack.import_pools(REPO_ROOT / "pools.json")
        for dag_id in (DAILY, BACKFILL):
            self.stack.wait_for_dag(dag_id)
            self.stack.unpause(dag_id)
        # Unpaused, the daily DAG schedules its latest trading date at once: not a scenario's run.
        with contextlib.suppress(AirflowStackError):
            self.stack.wait_for_scheduled_run(DAILY, timeout=120)
        self._settle_scheduled_runs()
        return self

    def _settle_scheduled_runs(self) -> None:
        """Mark the daily DAG's own scheduled runs done, so that only the scenarios' runs collect."""
        for run in self.stack.dag_runs(DAILY):
            if run["run_type"] == "scheduled" and run["state"] in ("queued", "running"):
                self.stack.set_dag_run_state(DAILY, run["dag_run_id"], "success")
                log.info("Marked the scheduler's own run %s done: not a scenario's", run["dag_run_id"])

    def __exit__(self, *exc_info: object) -> None:
        self._finish_background()
        self.release_client_ids()
        self.simulator.stop()
        self._resources.close()

    @property
    def ibkr_uri(self) -> str:
        """The ``ibkr`` connection URI pointing at the campaign's simulator."""
        return (
            f"ibkr://127.0.0.1:{self.port}?client_id=1&client_id_range=32"
            f"&request_timeout={self.request_timeout}&connect_timeout=5"
        )

    def now(self) -> dt.datetime:
        """Return the market's now: the simulator's clock (a scenario or the soak moves it)."""
        return self.simulator.simulator.now()

    def set_market_clock(self, moment: dt.datetime | None) -> None:
        """Make the simulator answer as of ``moment`` (aware), or of the campaign's own clock with None."""
        from tws_simulator.config import utc_now
        from tws_simulator.testing import fixed_clock

        base = self.clock or utc_now
        self.simulator.config.clock = base if moment is None else fixed_clock(moment)

    def _start_simulator(self, port: int) -> SimulatorThread:
        overrides: dict[str, Any] = {"port": port, "faults": {"*": {"latency_ms": self.latency_ms}}}
        if self.clock is not None:
            overrides["clock"] = self.clock
        return SimulatorThread(simulator_config(**overrides)).start()

    def _load_symbols(self) -> None:
        from ibkr_market_data.hooks.ibkr import IbkrHook
        from ibkr_market_data.symbols import load_symbols

        os.environ["AIRFLOW_CONN_IBKR_DEFAULT"] = self.ibkr_uri
        try:
            with psycopg.connect(self.market_db) as conn, IbkrHook() as hook:
                report = load_symbols(conn, hook, self.universe)
        finally:
            del os.environ["AIRFLOW_CONN_IBKR_DEFAULT"]
        if report.unresolved:
            raise RuntimeError(f"symbols the simulator did not resolve: {report.unresolved}")

    # -- what scenarios do ---------------------------------------------------------------------

    def prove(self, fault: str, fired: bool, text: str) -> None:
        """Record the proof an action gives that its fault fired (or did not)."""
        self.proofs.append(Proof(fault, fired, text))

    def inject(self, symbol: str | None = None, **settings: object) -> None:
        """Set simulator faults for ``symbol`` (None: every symbol); their proof is read at the run's end."""
        self.simulator.faults.set(symbol, **settings)

    def clear_faults(self) -> None:
        """Remove every simulator fault but the campaign's latency."""
        self.simulator.faults.clear_all()
        self.simulator.faults.set(None, latency_ms=self.latency_ms)

    def restart_simulator(self, down_seconds: float) -> int:
        """Stop the gateway (every connection drops), then serve again on the same port.

        Waits (up to a minute) until a request is open, so that the stop cuts one; returns how
        many were cut (each then ``abandoned`` in the stopped simulator's log).
        """
        held = self._await_open_requests()
        self.simulator.stop()
        cut = self._abandoned(held)
        self._trails.append(self._trail())
        time.sleep(down_seconds)
        self.simulator = self._start_simulator(port=self.port)
        self._violations_at_start = 0
        self.prove("gateway stopped", cut > 0, f"{cut} open requests cut at the stop")
        return cut

    def _trail(self) -> _SimulatorTrail:
        sim = self.simulator
        return _SimulatorTrail(
            records=sim.request_log.records(),
            notices=[notice.code for notice in sim.request_log.notices()],
            fired=sim.faults.fired(),
            residual=sim.faults.snapshot(),
            violations=sim.violations()[self._violations_at_start :],
        )

    def hold_client_ids(self, client_ids: Iterable[int]) -> None:
        """Connect one outside IB client per id in ``client_ids`` and keep it connected."""
        from ib_insync import IB

        for client_id in client_ids:
            ib = IB()
            ib.connect("127.0.0.1", self.port, clientId=client_id, readonly=True, timeout=10)
            self._outside_clients.append(ib)
            self.held_client_ids.add(client_id)

    def release_client_ids(self) -> None:
        """Disconnect the clients :meth:`hold_client_ids` connected, and prove IB refused their ids."""
        for ib in self._outside_clients:
            ib.disconnect()
        self._outside_clients.clear()

    def prove_held_ids_refused(self) -> None:
        """Prove IB refused (326) connections on the held client ids, and on no other id."""
        if not self.held_client_ids:
            return
        notices = self.simulator.request_log.notices(326)
        on_held = sorted({n.client_id for n in notices if n.client_id in self.held_client_ids})
        self.prove(
            "client ids held",
            bool(on_held),
            f"326 sent {len(notices)}× to the collector, on held ids {on_held}",
        )

    def lock_market_data(self, seconds: float) -> int:
        """Hold an ACCESS EXCLUSIVE lock on ``market_data`` for ``seconds``; return the most waiting on it."""
        waiting = 0
        with (
            psycopg.connect(self.market_db) as conn,
            psycopg.connect(self.market_db, autocommit=True) as probe,
        ):
            conn.execute("LOCK TABLE market_data IN ACCESS EXCLUSIVE MODE")
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                row = probe.execute(
                    """
                    SELECT COUNT(DISTINCT l.pid) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                    WHERE NOT l.granted AND c.relname LIKE 'market_data%%'
                    """
                ).fetchone()
                waiting = max(waiting, int(row[0]) if row else 0)
                time.sleep(0.5)
            conn.rollback()
        self.prove("lock on market_data", waiting > 0, f"up to {waiting} sessions waited for the lock")
        return waiting

    def set_statement_timeout(self, milliseconds: int | None) -> None:
        """Give every new market-data session a statement timeout (None: the default, none)."""
        with psycopg.connect(self.market_db, autocommit=True) as conn:
            name = psycopg.sql.Identifier(self.market_db_name)
            if milliseconds is None:
                conn.execute(psycopg.sql.SQL("ALTER DATABASE {} RESET statement_timeout").format(name))
            else:
                conn.execute(
                    psycopg.sql.SQL("ALTER DATABASE {} SET statement_timeout = {}").format(
                        name, psycopg.sql.Literal(milliseconds)
                    )
                )

    def _market_sessions(self) -> int:
        with psycopg.connect(self.market_db, autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT COUNT(*) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND backend_type = 'client backend'
                """
            ).fetchone()
        return int(row[0]) if row else 0

    def restart_market_server(self, down_seconds: float) -> int:
        """Stop the market-data server (every session is cut), start it ``down_seconds`` later.

        Waits (up to a minute) until the run holds a session, so that the stop cuts one.
        """
        deadline = time.monotonic() + 60
        sessions = self._market_sessions()
        while not sessions and time.monotonic() < deadline:
            time.sleep(0.2)
            sessions = self._market_sessions()
        self.market_server.stop()
        self.prove("market-data server stopped", sessions > 0, f"{sessions} sessions of the run cut")
        time.sleep(down_seconds)
        self.market_server.start()
        return sessions

    def refuse_market_connections(self, seconds: float) -> None:
        """Stop the market-data server now and start it again ``seconds`` later, in the background."""
        self.market_server.stop()
        refused = False
        try:
            psycopg.connect(self.market_db, connect_timeout=3).close()
        except psycopg.OperationalError:
            refused = True
        self.prove("market-data server down", refused, "a connection to it was refused")

        def start_again() -> None:
            time.sleep(seconds)
            self._down_until = time.time()
            self.market_server.start()

        restart = threading.Thread(target=start_again, daemon=True)
        restart.start()
        self._background.append(restart)

    def prove_tries_refused(self, dag_id: str, run_id: str) -> None:
        """Prove the run tried while the server was down: a try that failed before it was back."""
        down_until = self._down_until
        failed = []
        for ti in self.stack.task_instances(dag_id, run_id):
            if ti["try_number"] <= 1 or down_until is None:
                continue
            for attempt in self.stack.task_instance_tries(dag_id, run_id, ti["task_id"], ti["map_index"]):
                ended = _epoch(attempt.get("end_date"))
                if attempt["state"] in ("failed", "up_for_retry") and ended and ended <= down_until + 5:
                    failed.append(ti["task_id"])
        self.prove("run tried while refused", bool(failed), f"{len(failed)} tries failed while it was down")

    def restart_scheduler(self, down_seconds: float) -> str:
        """SIGKILL the scheduler and every process under it (LocalExecutor: its task runners); restart it.

        With the LocalExecutor it waits (up to a minute) until a task runner under it holds an IB
        request open, and kills then (see :meth:`_kill_if_holding`).
        """
        leader = self.stack.processes["scheduler"].pid
        local = self.executor == "local"
        running = self._running_collects(self.current_run)
        killed: list[int] = []

        def kill() -> None:
            killed.extend(self.stack.kill("scheduler"))

        cut: list[RequestRecord] = []
        if local:
            cut = self._await_kill_holding(lambda: observe.process_tree(leader), kill)
        if not killed:
            kill()
        gone = not Path(f"/proc/{leader}").exists()
        cut_now = self._abandoned(cut)
        time.sleep(down_seconds)
        restarted = self.stack.restart("scheduler")
        fired = gone and running > 0 and (cut_now > 0 or not local)
        self.prove(
            "scheduler SIGKILL",
            fired,
            f"pid {leader} gone with {running} collect tasks running ({len(killed)} processes killed)"
            + (f", {cut_now} of {len(cut)} open requests cut" if local else "")
            + f"; restarted as pid {restarted}",
        )
        return f"scheduler (pid {leader})"

    def kill_a_celery_worker(self) -> str:
        """SIGKILL one Celery worker and its task runners (once one holds a request open); start it again."""
        name = sorted(self.stack.worker_pids())[0]
        leader = self.stack.processes[name].pid
        killed: list[int] = []

        def kill() -> None:
            killed.extend(self.stack.kill_worker(name))

        cut = self._await_kill_holding(lambda: observe.process_tree(leader), kill)
        if not killed:
            kill()
        cut_now = self._abandoned(cut)
        self.prove(f"Celery {name} SIGKILL", cut_now > 0, f"{cut_now} open requests of its tasks cut")
        self.stack.start_worker(int(name.removeprefix("worker")))
        return name

    def kill_a_collect_task_process(self, timeout: float = 120) -> str:
        """SIGKILL the process of a running collect task the moment it has an IB request open.

        The process is the task runner titled ``airflow worker -- <ti id>``; its sockets to the
        simulator name the requests it holds open (see :meth:`_kill_if_holding`). Proof: they
        end ``abandoned``.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ti in self.stack.task_instances(DAILY, self.current_run):
                if ti["task_id"] != "collect" or ti["state"] != "running":
                    continue
                title = f"airflow worker -- {ti['id']}"
                pids: list[int] = []

                def titled(title: str = title, pids: list[int] = pids) -> list[int]:
                    pids[:] = observe.pids_with_title(title)
                    return pids

                def kill(pids: list[int] = pids) -> None:
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)

                held = self._kill_if_holding(titled, kill)
                if not held:
                    continue
                cut = self._abandoned(held)
                label = ti.get("rendered_map_index") or ti["map_index"]
                self.prove(
                    "task process SIGKILL",
                    cut > 0 and cut == len(held),
                    f"pid {', '.join(map(str, pids))} ran collect {label} with {len(held)} requests open; "
                    f"{cut} cut",
                )
                return f"{label}, pid {pids[0]}"
            if self.stack.dag_run(DAILY, self.current_run)["state"] in ("success", "failed"):
                break
            time.sleep(0.2)
        self.prove("task process SIGKILL", False, "no collect task process held an open request")
        return "none had a request open"

    def _requests_open(self, pids: Iterable[int]) -> list[RequestRecord]:
        """Return the historical requests the processes ``pids`` hold open, by their sockets' ports."""
        ports = observe.client_ports(pids, self.port)
        return observe.open_requests(self.simulator.request_log.historical(), ports) if ports else []

    def _kill_if_holding(
        self, pids_of: Callable[[], list[int]], kill: Callable[[], None], closing: float = 30
    ) -> list[RequestRecord]:
        """Call ``kill`` if the processes ``pids_of()`` hold requests open; return those requests.

        The kill happens with the simulator paused, so no timing decides the proof: a request
        seen open is still open when its process dies, and the simulator resumes only once the
        kernel holds each of its sockets' ends (or ``closing`` seconds passed); it then reads
        those ends before answering anything, and the requests end ``abandoned``.
        Returns [] (and kills nothing) when they hold none.
        """
        if not self._requests_open(pids_of()):  # looked at first unpaused: the run is not held for nothing
            return []
        with self.simulator.paused():
            held = self._requests_open(pids_of())
            if not held:
                return []
            kill()
            ports = {record.client_port for record in held}
            deadline = time.monotonic() + closing
            while observe.established(self.port, ports) and time.monotonic() < deadline:
                time.sleep(0.01)
        return held

    def _await_kill_holding(
        self, pids_of: Callable[[], list[int]], kill: Callable[[], None], timeout: float = 60
    ) -> list[RequestRecord]:
        """Wait (up to ``timeout``) until :meth:`_kill_if_holding` kills; return the requests it cut."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            held = self._kill_if_holding(pids_of, kill)
            if held:
                return held
            time.sleep(0.2)
        return []

    def _await_open_requests(self, timeout: float = 60) -> list[RequestRecord]:
        """Wait until a client holds historical requests open; return them once one is fresh.

        Returns once one of them is younger than half the answer latency, so that a stop of the
        simulator that follows at once finds it still open.
        """
        fresh = dt.timedelta(milliseconds=self.latency_ms / 2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            held = [r for r in self.simulator.request_log.historical() if r.outcome == "pending"]
            now = dt.datetime.now(dt.UTC)
            if any(now - record.received_at < fresh for record in held):
                return held
            time.sleep(0.01)
        return []

    def _abandoned(self, held: Sequence[RequestRecord], timeout: float = 10) -> int:
        """Return how many of the ``held`` requests ended ``abandoned`` (their client's socket closed)."""
        wanted = {(r.client_id, r.req_id, r.client_port) for r in held}

        def count() -> int:
            return sum(
                1
                for r in self.simulator.request_log.historical()
                if (r.client_id, r.req_id, r.client_port) in wanted and r.outcome == "abandoned"
            )

        deadline = time.monotonic() + timeout
        while count() < len(wanted) and time.monotonic() < deadline:
            time.sleep(0.1)
        return count()

    def _running_collects(self, run_id: str) -> int:
        return sum(
            1
            for ti in self.stack.task_instances(DAILY, run_id)
            if ti["task_id"] == "collect" and ti["state"] == "running"
        )

    # -- one scenario --------------------------------------------------------------------------

    def run(
        self,
        scenario: Scenario,
        trading_date: dt.date = TRADING_DATE,
        *,
        fresh: bool = True,
        rerun: bool = True,
    ) -> Outcome:
        """Run one scenario: inject its faults around a daily run of ``trading_date``; return what survived.

        ``fresh``: start from an empty market-data database. ``rerun``: when the run left a bar
        missing, run the date again, as the next scheduled run or an operator would.
        """
        log.info("Scenario: %s (%s)", scenario.name, trading_date)
        self._reset(fresh)
        triggered_at = time.time()
        injected = [scenario.before(self, "")]
        day = trading_date.isoformat()
        runs: list[tuple[str, str]] = []
        if scenario.overlapping_backfill:
            # The backfill first: it finds the date missing, so both collect it at once.
            runs.append((BACKFILL, self.stack.trigger(BACKFILL, {"start_date": day, "end_date": day})))
            injected.append(f"a backfill of {day} triggered beside it")
        run_id = self.current_run = self.stack.trigger(DAILY, {"date": day})
        runs.insert(0, (DAILY, run_id))
        self.last_runs = runs
        if scenario.double_trigger:
            runs.append((DAILY, self.stack.trigger(DAILY, {"date": day})))
            injected.append("the same date triggered again at once")
        if scenario.during is not nothing:
            if self._await_running_collects(run_id):
                injected.append(scenario.during(self, run_id))
            else:
                injected.append("(no collect task was running to inject into)")
        states = [
            self.stack.wait_for_run(dag, rid, timeout=RUN_TIMEOUT_SECONDS)["state"] for dag, rid in runs
        ]
        sim_trace = self._trail()  # before ``after`` clears the faults: what is left of them
        self.prove_held_ids_refused()
        if scenario.double_trigger:
            self._prove_queued(runs[0][1], runs[-1][1])
        if scenario.overlapping_backfill:
            self._prove_overlap(runs[0][1], runs[1][1])
        after = scenario.after(self, run_id)
        # A scenario may report its own evidence ("fired: ..."); it goes with the simulator's.
        own_evidence = after.removeprefix("fired: ") if after.startswith("fired: ") else ""
        injected.append("" if own_evidence else after)
        self._finish_background()
        for breakage in self.breaks:
            log.info("Negative control: %s", breakage(self, run_id))
        first = self.verdict(trading_date, runs, scenario)
        silent = invariants.silent(states, first.differences)
        recovered_by = "the run itself"
        if first.differences and rerun:
            recovered_by = "a second run of the date"
            self.current_run = rerun_id = self.stack.trigger(DAILY, {"date": day})
            self.stack.wait_for_run(DAILY, rerun_id, timeout=RUN_TIMEOUT_SECONDS)
            runs.append((DAILY, rerun_id))
        final = self.verdict(trading_date, runs, scenario)
        if final.differences:
            recovered_by = "**not recovered**"
        trail = self._merged_trail(sim_trace)
        proofs = evidence.simulator_proofs(
            SimulatorTrace(
                residual=trail.residual,
                fired=trail.fired,
                answers=[
                    Answer(
                        r.outcome,
                        r.error_code,
                        r.error_message,
                        (r.answered_at - r.received_at).total_seconds() if r.answered_at else None,
                    )
                    for r in trail.records
                ],
                notices=evidence.count_notices(trail.notices),
                keys_changed_by_properties=final.changed_by_properties,
            )
        )
        fired_ok, fired_text = evidence.fired_verdict(proofs + self.proofs, injected)
        if own_evidence:
            fired_text += f"; the scenario's own look: {own_evidence}"
        last_store = max(final.snapshot.stored_at.values(), default=triggered_at)
        return Outcome(
            scenario=scenario.name,
            area=scenario.area,
            injected="; ".join(text for text in injected if text) or "nothing",
            fired=fired_text,
            fired_ok=fired_ok,
            first_run=states[0],
            recovered_by=recovered_by,
            tasks_retried=sum(self._retried(dag, rid) for dag, rid in runs),
            bars_compared=sum(len(bars) for bars in final.expected.bars.values()),
            bars_lost=len(final.differences),
            false_no_data=sum(1 for d in final.differences if d.kind == invariants.NO_DATA_WRONGLY),
            silent=silent,
            ib_requests=len(final.requests),
            repeat_requests=invariants.repeats(final.requests),
            needless_requests=len(final.needless),
            fake_revisions=len(final.fake_revisions),
            unfinished=len(final.unfinished),
            ib_rules_broken=len(final.broken),
            expected_refusals=len(final.by_design),
            seconds_to_recover=None if final.differences else round(last_store - triggered_at, 1),
            notes=scenario.notes,
            findings=_findings(first, final, silent),
        )

    def verdict(self, trading_date: dt.date, runs: Sequence[tuple[str, str]], scenario: Scenario) -> Verdict:
        """Judge every invariant now, from the simulator, the database and Airflow."""
        with psycopg.connect(self.market_db) as conn:
            keys = observe.window_keys(
                self.simulator.model,
                [observe.Symbol(s.symbol, s.priority) for s in self.universe],
                trading_date,
                self.lookback,
                self.policy,
            )
            keys |= observe.plan_keys(conn, runs)
            served = observe.served_bars(self.simulator.served, keys, self.now())
            snapshot = observe.db_snapshot(conn, self.simulator.model, keys)
            revisions = observe.revisions(conn, self.simulator.model)
            pending = {rid: observe.pending_attempts(conn, dag, rid) for dag, rid in runs}
        trail = self._merged_trail(self._trail())
        requests = observe.requests_of(trail.records, self.simulator.model)
        versions = observe.served_versions(
            self.simulator.served, {r.key for r in revisions}, [self.now(), *self.served_moments]
        )
        defective = _defective_symbols(trail.residual, {s.symbol for s in self.universe})
        tasks = [
            TaskState(rid, ti["task_id"], ti["map_index"], ti["state"], ti.get("rendered_map_index") or "")
            for dag, rid in runs
            for ti in self.stack.task_instances(dag, rid)
        ]
        last_daily = [rid for dag, rid in runs if dag == DAILY][-1]
        breaches = [invariants.RuleBreach(v.rule, v.client_id) for v in trail.violations]
        broken, by_design = invariants.rules_broken(
            breaches, scenario.expected_refusals, self.held_client_ids
        )
        return Verdict(
            expected=served.expected,
            snapshot=snapshot,
            differences=invariants.lost(served.expected, snapshot),
            requests=requests,
            needless=invariants.needless_requests(
                requests, served.expected, snapshot, scenario.repeat_allowance
            ),
            fake_revisions=invariants.fake_revisions(revisions, versions, defective),
            unfinished=invariants.unfinished(tasks, last_daily, pending),
            broken=broken,
            by_design=by_design,
            changed_by_properties=served.changed_by_properties,
        )

    def _merged_trail(self, current: _SimulatorTrail) -> _SimulatorTrail:
        trails = [*self._trails, current]
        fired: dict[str, int] = {}
        residual: dict[str, dict[str, Any]] = {}
        for index, trail in enumerate(trails):
            for name, count in trail.fired.items():
                fired[name] = fired.get(name, 0) + count
            for symbol, settings in trail.residual.items():
                residual[f"{symbol}#{index}"] = dict(settings)
        return _SimulatorTrail(
            records=[r for t in trails for r in t.records],
            notices=[n for t in trails for n in t.notices],
            fired=fired,
            residual=residual,
            violations=[v for t in trails for v in t.violations],
        )

    def _prove_queued(self, first: str, second: str) -> None:
        one, two = self.stack.dag_run(DAILY, first), self.stack.dag_run(DAILY, second)
        queued = (_epoch(two.get("start_date")) or 0) >= (_epoch(one.get("end_date")) or float("inf"))
        self.prove(
            "second trigger",
            queued,
            f"the second run started {two.get('start_date')}, after the first ended {one.get('end_date')}"
            if queued
            else "the second run started before the first ended",
        )

    def _prove_overlap(self, daily_run: str, backfill_run: str) -> None:
        def spans(dag: str, rid: str, task: str) -> list[tuple[float, float]]:
            return [
                (_epoch(ti.get("start_date")) or 0.0, _epoch(ti.get("end_date")) or float("inf"))
                for ti in self.stack.task_instances(dag, rid)
                if ti["task_id"] == task and ti.get("start_date")
            ]

        daily, backfill = spans(DAILY, daily_run, "collect"), spans(BACKFILL, backfill_run, "collect_gap")
        overlapping = sum(1 for a in daily for b in backfill if a[0] < b[1] and b[0] < a[1])
        self.prove(
            "overlapping backfill",
            overlapping > 0,
            f"{len(backfill)} backfill collect tasks, {overlapping} pairs running beside daily collect tasks",
        )

    def _finish_background(self) -> None:
        for action in self._background:
            action.join()
        self._background.clear()

    def _reset(self, fresh: bool) -> None:
        self._settle_scheduled_runs()
        self._trails = []
        self.proofs = []
        self.held_client_ids = set()
        self._down_until = None
        self._violations_at_start = len(self.simulator.violations())
        self.clear_faults()
        self.set_market_clock(None)
        self.simulator.faults.reset_fired()
        self.simulator.request_log.clear()  # a scenario's proof reads its own requests only
        if fresh:
            with psycopg.connect(self.market_db, autocommit=True) as conn:
                conn.execute(f"TRUNCATE {', '.join(RESET_TABLES)}")  # noqa: S608 (constant table names)

    def _await_running_collects(self, run_id: str, timeout: float = 300) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._running_collects(run_id):
                return True
            if self.stack.dag_run(DAILY, run_id)["state"] in ("success", "failed"):
                return False
            time.sleep(0.5)
        return False

    def _retried(self, dag_id: str, run_id: str) -> int:
        return sum(1 for ti in self.stack.task_instances(dag_id, run_id) if ti["try_number"] > 1)


def _defective_symbols(residual: dict[str, dict[str, Any]], symbols: set[str]) -> set[str]:
    """Return the symbols a data-defect fault was set for (``"*"``: all): their revisions may be real."""
    found: set[str] = set()
    for key, settings in residual.items():
        if any(name in settings for name in evidence.DATA_DEFECTS):
            symbol = key.split("#", 1)[0]
            found |= symbols if symbol == "*" else {symbol}
    return found


def _findings(first: Verdict, final: Verdict, silent: int, limit: int = 3) -> list[str]:
    found = []
    if silent:
        found.append("silent: " + ", ".join(map(str, first.differences[:limit])))
    if final.differences:
        found.append("lost: " + ", ".join(map(str, final.differences[:limit])))
    if final.needless:
        found.append(
            "needless requests: "
            + ", ".join(
                f"{r.symbol} {r.timeframe} {r.sessions[0]}..{r.sessions[-1]}" for r in final.needless[:limit]
            )
        )
    if final.fake_revisions:
        found.append(
            "fake revisions: "
            + ", ".join(f"{r.key[0]} {r.key[1]} {r.timestamp}" for r in final.fake_revisions[:limit])
        )
    if final.unfinished:
        found.append("unfinished: " + ", ".join(final.unfinished[:limit]))
    if final.broken:
        found.append(
            "rules broken: " + ", ".join(f"{b.rule} (client {b.client_id})" for b in final.broken[:limit])
        )
    return found


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _campaign_universe(count: int) -> list[Any]:
    """Return ``count`` symbols, half ASX and half US, the special ones (BRK A, GGP, SQQQ) included."""
    universe = load_universe()
    special = [s for s in universe if s.symbol in ("BRK A", "GGP", "SQQQ")]
    asx = [s for s in universe if s.primary_exchange == "ASX" and s not in special]
    us = [s for s in universe if s.primary_exchange != "ASX" and s not in special]
    rest = count - len(special)
    return special + asx[: rest // 2] + us[: rest - rest // 2]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- results ------------------------------------------------------------------------------------


COLUMNS = (
    ("scenario", "scenario"),
    ("area", "area"),
    ("injected (once collect tasks ran, unless before the run)", "injected"),
    ("fired: the evidence", "fired"),
    ("first run", "first_run"),
    ("recovered by", "recovered_by"),
    ("tasks retried", "tasks_retried"),
    ("bars compared", "bars_compared"),
    ("bars lost", "bars_lost"),
    ("of which no-data where IB has bars", "false_no_data"),
    ("silent", "silent"),
    ("IB requests (repeats)", "ib_requests"),
    ("needless requests", "needless_requests"),
    ("fake revisions", "fake_revisions"),
    ("unfinished", "unfinished"),
    ("IB rules broken", "ib_rules_broken"),
    ("refusals by design", "expected_refusals"),
    ("s to recover", "seconds_to_recover"),
)


def _cell(outcome: dict[str, Any], key: str) -> str:
    value = outcome.get(key)
    if key == "ib_requests":
        return f"{value} ({outcome.get('repeat_requests', 0)})"
    if key == "fired":
        return ("" if outcome.get("fired_ok") else "**NOT FIRED** ") + str(value)
    if key == "seconds_to_recover" and value is None:
        return "not recovered"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    """Render campaign results as Markdown: the setup, one row per scenario, the negative controls."""
    outcomes = results["outcomes"]
    lines = [
        "# Fault campaign results",
        "",
        "Written by `make faults` (`campaign/run.py`); "
        f"raw figures in `{results.get('raw_file', 'campaign/results.json')}`. What each column "
        "means: [docs/fault-campaign.md](../docs/fault-campaign.md#what-is-checked).",
        "",
        f"Measured {results['measured_at']} on {results['code']}: {results['symbols']} symbols "
        f"({results.get('workload', '')}), trading date {results['trading_date']}, every simulator "
        f"answer delayed {results['latency_ms']} ms, the hook's request_timeout "
        f"{results['request_timeout']} s, no statement timeout on the market data (production's "
        f"configuration); real scheduler, {results.get('executor_text', 'LocalExecutor')}.",
        "",
        "| " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for outcome in outcomes:
        cells = [_cell(outcome, key).replace("|", "\\|") for _, key in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    clean = sum(1 for o in outcomes if is_clean(o))
    lines += [
        "",
        f"{clean} of {len(outcomes)} scenarios prove their fault fired and end with nothing lost, "
        "nothing silent, no needless request, no fake revision, nothing unfinished and no IB rule broken.",
    ]
    controls = results.get("controls", [])
    if controls:
        lines += [
            "",
            "## Negative controls",
            "",
            "Each invariant, broken on purpose; each must catch it.",
            "",
            "| invariant | how it is broken | value unbroken | value broken | caught |",
            "|---|---|---|---|---|",
        ]
        for control in controls:
            lines.append(
                f"| {control['invariant']} | {control['how']} | {control['before']} | {control['after']} | "
                f"{'caught' if control['caught'] else '**NOT CAUGHT**'} |"
            )
    findings = [f"- **{o['scenario']}**: " + "; ".join(o["findings"]) for o in outcomes if o.get("findings")]
    if findings:
        lines += ["", "Findings:", "", *findings]
    notes = [f"- **{o['scenario']}**: {o['notes']}" for o in outcomes if o["notes"]]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def _result_files(executor: str) -> tuple[Path, Path]:
    """Return ``results.md`` / ``.json`` for the LocalExecutor, ``results-celery.*`` for Celery."""
    stem = "results" if executor == "local" else f"results-{executor}"
    return CAMPAIGN_DIR / f"{stem}.md", CAMPAIGN_DIR / f"{stem}.json"


def workload_text(campaign: Campaign) -> str:
    """Return the workload in words: the timeframes and which symbols get intraday bars."""
    intraday = [s for s in campaign.universe if s.priority <= campaign.policy.intraday_max_priority]
    names = ", ".join(tf.name for tf in campaign.policy.intraday)
    return (
        f"daily bars for all, {names} for the {len(intraday)} of priority <= "
        f"{campaign.policy.intraday_max_priority}; each run looks back {campaign.lookback} sessions"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios asked for, writing the results after each; return 1 unless every one is clean."""
    from campaign.controls import CONTROLS_NAME, run_controls

    parser = argparse.ArgumentParser(prog="make faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names (substrings)")
    parser.add_argument("--symbols", type=int, default=24)
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--request-timeout", type=int, default=10)
    parser.add_argument(
        "--executor", choices=("local", "celery"), default="local", help="celery: two workers, Redis broker"
    )
    options = parser.parse_args(argv)
    wanted = [name.strip() for name in options.only.split(",") if name.strip()]
    scenarios = [
        s
        for s in SCENARIOS
        if (not wanted or any(w in s.name for w in wanted)) and options.executor in s.executors
    ]
    with_controls = not wanted or any(w in CONTROLS_NAME for w in wanted)
    if not scenarios and not with_controls:
        parser.error(
            f"--only {options.only!r} matches no scenario; known: "
            f"{', '.join(s.name for s in SCENARIOS)}, {CONTROLS_NAME}"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    from bench.run import code_state

    results: dict[str, Any] = {
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "code": code_state(),
        "symbols": options.symbols,
        "trading_date": TRADING_DATE.isoformat(),
        "latency_ms": options.latency_ms,
        "request_timeout": options.request_timeout,
        "executor_text": "CeleryExecutor, 2 workers" if options.executor == "celery" else "LocalExecutor",
        "outcomes": [],
        "controls": [],
    }
    results_md, results_json = _result_files(options.executor)
    results["raw_file"] = f"campaign/{results_json.name}"

    def write() -> None:
        results_json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        results_md.write_text(markdown(results))

    with Campaign(options.symbols, options.latency_ms, options.request_timeout, options.executor) as campaign:
        results["workload"] = workload_text(campaign)
        for scenario in scenarios:
            outcome = campaign.run(scenario)
            log.info("%s: %s", scenario.name, asdict(outcome))
            results["outcomes"].append(asdict(outcome))
            write()
        if with_controls:
            results["controls"] = [asdict(control) for control in run_controls(campaign)]
            write()
    print(markdown(results))
    every_scenario = all(is_clean(o) for o in results["outcomes"])
    every_control = all(control["caught"] for control in results["controls"])
    return 0 if every_scenario and every_control else 1


if __name__ == "__main__":
    sys.exit(main())
