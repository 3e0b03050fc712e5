"""``make faults``: each fault scenario against a real daily run, and what it cost.

One Airflow stack, one TWS simulator and one throwaway market-data server serve every scenario;
results go to ``campaign/results.md``. The setup, one scenario's steps and the invariants checked:
docs/fault-campaign.md#the-setup.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from campaign.scenarios import SCENARIOS, Scenario
from ibkr_market_data import repository, schema
from ibkr_market_data.repository import AttemptStatus
from ibkr_market_data.universe import load_universe
from ibkr_market_data_dev import local_postgres
from ibkr_market_data_dev.airflow_stack import AirflowStack
from ibkr_market_data_dev.local_env import REPO_ROOT, celery_broker_url
from ibkr_market_data_dev.simulated_ib import simulator_config, stored_bar
from ibkr_market_data_dev.throwaway_postgres import ThrowawayPostgres
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
)
#: The market-data sessions' statement timeout: a write stuck behind a lock fails, and is retried.
STATEMENT_TIMEOUT_MS = 10_000


@dataclass
class Outcome:
    """One scenario's result: what was injected, how the run recovered and what, if anything, was lost."""

    scenario: str
    area: str
    injected: str
    first_run: str
    recovered_by: str
    tasks_retried: int
    bars_expected: int
    bars_lost: int
    duplicates: int
    unfinished: int
    ib_rules_broken: int
    expected_refusals: int
    seconds_to_recover: float
    notes: str
    #: Sessions settled as "no data" although IB's model says they traded (an outage called no data).
    false_no_data: int = 0

    @property
    def clean(self) -> bool:
        """True when nothing was lost, duplicated, left unfinished, broken or called no data wrongly."""
        return not (
            self.bars_lost or self.duplicates or self.unfinished or self.ib_rules_broken or self.false_no_data
        )


class Campaign:
    """The stack, simulator and database every scenario acts on."""

    def __init__(self, symbols: int, latency_ms: int, request_timeout: int, executor: str = "local") -> None:
        self.executor = executor
        self.latency_ms = latency_ms
        self.request_timeout = request_timeout
        self.universe = _campaign_universe(symbols)
        self._resources = ExitStack()
        self._outside_clients: list[Any] = []
        self._background: list[threading.Timer] = []
        self.simulator = self._start_simulator(port=0)
        self.port = self.simulator.port
        self._violations_seen: list[Violation] = []  # in this scenario, by simulators since stopped
        self._violations_at_start = 0  # the running simulator's count when the scenario began

    # -- set-up --------------------------------------------------------------------------------

    def __enter__(self) -> Campaign:
        self.market_server = ThrowawayPostgres()
        self._resources.callback(self.market_server.remove)
        self.market_server.start()
        self.market_db = local_postgres.create_database(
            self.market_server.url, prefix="ibkr_market_data_faults"
        )
        server = local_postgres.server_url()
        metadata_db = local_postgres.create_database(server)
        self._resources.callback(local_postgres.drop_database, metadata_db)
        schema.upgrade(self.market_db)
        self._load_symbols()
        home = Path(tempfile.mkdtemp(prefix="ibkr-market-data-faults-"))
        statement_timeout = quote(f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")
        self.stack = AirflowStack(
            home,
            port=_free_port(),
            executor=self.executor,
            broker_url=celery_broker_url() if self.executor == "celery" else None,
            separate=True,
            env={
                "AIRFLOW_CONN_MARKET_DATA_DB": f"{self.market_db}?options={statement_timeout}",
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
        return self

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

    def _start_simulator(self, port: int) -> SimulatorThread:
        simulator = SimulatorThread(
            simulator_config(port=port, faults={"*": {"latency_ms": self.latency_ms}})
        )
        return simulator.start()

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

    def restart_simulator(self, down_seconds: float) -> None:
        """Stop the gateway (every connection drops), then serve again on the same port."""
        self._violations_seen += self.simulator.violations()[self._violations_at_start :]
        self._violations_at_start = 0
        self.simulator.stop()
        time.sleep(down_seconds)
        self.simulator = self._start_simulator(port=self.port)

    def hold_client_ids(self, client_ids: Iterable[int]) -> None:
        """Connect one outside IB client per id in ``client_ids`` and keep it connected."""
        from ib_insync import IB

        for client_id in client_ids:
            ib = IB()
            ib.connect("127.0.0.1", self.port, clientId=client_id, readonly=True, timeout=10)
            self._outside_clients.append(ib)

    def release_client_ids(self) -> None:
        """Disconnect the clients :meth:`hold_client_ids` connected."""
        for ib in self._outside_clients:
            ib.disconnect()
        self._outside_clients.clear()

    def lock_market_data(self, seconds: float) -> None:
        """Hold an ACCESS EXCLUSIVE lock on ``market_data`` from another session for ``seconds``."""
        with psycopg.connect(self.market_db) as conn:
            conn.execute("LOCK TABLE market_data IN ACCESS EXCLUSIVE MODE")
            time.sleep(seconds)
            conn.rollback()

    def set_market_clock(self, moment: dt.datetime | None) -> None:
        """Make the simulator answer as of ``moment`` (aware), or of the real time again with None."""
        from tws_simulator.config import utc_now
        from tws_simulator.testing import fixed_clock

        self.simulator.config.clock = utc_now if moment is None else fixed_clock(moment)

    def restart_market_server(self, down_seconds: float) -> None:
        """Stop the market-data server (every session is cut), start it again ``down_seconds`` later."""
        self.market_server.stop()
        time.sleep(down_seconds)
        self.market_server.start()

    def refuse_market_connections(self, seconds: float) -> None:
        """Stop the market-data server now and start it again ``seconds`` later, in the background."""
        self.market_server.stop()
        restart = threading.Timer(seconds, self.market_server.start)
        restart.daemon = True
        restart.start()
        self._background.append(restart)

    def restart_scheduler(self, down_seconds: float) -> int:
        """SIGKILL the scheduler (its LocalExecutor's task processes go with it); restart it later."""
        return self.stack.kill_and_restart("scheduler", down_seconds)

    def kill_a_celery_worker(self) -> str:
        """SIGKILL one Celery worker (its running tasks go with it) and start it again."""
        name = sorted(self.stack.worker_pids())[0]
        self.stack.kill_worker(name)
        self.stack.start_worker(int(name.removeprefix("worker")))
        return name

    def kill_a_collect_task_process(self, timeout: float = 60) -> str:
        """SIGKILL the process of one running collect task (``airflow worker -- <ti id>``).

        A task is ``running`` a moment before its process takes that title, and a short one may end
        between two looks: look again until one is killed or the run has ended.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ti in self.stack.task_instances(DAILY, self.current_run):
                if ti["task_id"] != "collect" or ti["state"] != "running":
                    continue
                for pid in _pids_with_title(f"airflow worker -- {ti['id']}"):
                    os.kill(pid, signal.SIGKILL)
                    return f"{ti['rendered_map_index']}, pid {pid}"
            if self.stack.dag_run(DAILY, self.current_run)["state"] in ("success", "failed"):
                break
            time.sleep(0.2)
        return "none was running"

    # -- one scenario --------------------------------------------------------------------------

    def run(self, scenario: Scenario) -> Outcome:
        """Run one scenario: inject its faults around a daily run and return what survived."""
        log.info("Scenario: %s", scenario.name)
        self._reset()
        started = time.monotonic()
        self.current_run = ""
        injected = [scenario.before(self, "")]
        run_id = self.current_run = self.stack.trigger(DAILY, {"date": TRADING_DATE.isoformat()})
        run_ids = [run_id]
        if scenario.double_trigger:
            run_ids.append(self.stack.trigger(DAILY, {"date": TRADING_DATE.isoformat()}))
            injected.append("the same date triggered twice at once")
        if scenario.overlapping_backfill:
            day = TRADING_DATE.isoformat()
            run_ids.append(self.stack.trigger(BACKFILL, {"start_date": day, "end_date": day}))
            injected.append(f"a backfill of {day} triggered beside it")
        if self._await_running_collects(run_id):
            injected.append(scenario.during(self, run_id))
        else:
            injected.append("(no collect task was running to inject into)")
        runs = [
            self.stack.wait_for_run(_dag_of(i, scenario), rid, timeout=1800) for i, rid in enumerate(run_ids)
        ]
        injected.append(scenario.after(self, run_id))
        self._finish_background()
        first_state = runs[0]["state"]
        recovered_by = "the run itself"
        if self._bars_lost():
            recovered_by = "a second run of the date"
            self.current_run = rerun = self.stack.trigger(DAILY, {"date": TRADING_DATE.isoformat()})
            self.stack.wait_for_run(DAILY, rerun, timeout=1800)
            run_ids.append(rerun)
        seconds = time.monotonic() - started
        violations = self._violations_seen + self.simulator.violations()[self._violations_at_start :]
        refusals = sum(1 for violation in violations if violation.rule in scenario.expected_refusals)
        return Outcome(
            scenario=scenario.name,
            area=scenario.area,
            injected="; ".join(text for text in injected if text) or "nothing",
            first_run=first_state,
            recovered_by=recovered_by if not self._bars_lost() else "**not recovered**",
            tasks_retried=sum(self._retried(_dag_of(i, scenario), rid) for i, rid in enumerate(run_ids)),
            bars_expected=len(self._expected_bars()),
            bars_lost=self._bars_lost(),
            duplicates=self._duplicates(),
            unfinished=sum(self._unfinished(_dag_of(i, scenario), rid) for i, rid in enumerate(run_ids)),
            ib_rules_broken=len(violations) - refusals,
            expected_refusals=refusals,
            seconds_to_recover=round(seconds, 1),
            notes=scenario.notes,
            false_no_data=self._false_no_data(),
        )

    def _finish_background(self) -> None:
        for action in self._background:
            action.join()
        self._background.clear()

    def _reset(self) -> None:
        self._violations_seen = []
        self._violations_at_start = len(self.simulator.violations())
        self.simulator.faults.clear_all()
        self.simulator.faults.set(None, latency_ms=self.latency_ms)
        self.set_market_clock(None)
        self.simulator.request_log.clear()  # a scenario's proof reads its own requests only
        with psycopg.connect(self.market_db, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {', '.join(RESET_TABLES)}")  # noqa: S608 (constant table names)

    def _await_running_collects(self, run_id: str, timeout: float = 300) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            instances = self.stack.task_instances(DAILY, run_id)
            if any(ti["task_id"] == "collect" and ti["state"] == "running" for ti in instances):
                return True
            if self.stack.dag_run(DAILY, run_id)["state"] in ("success", "failed"):
                return False
            time.sleep(0.5)
        return False

    # -- invariants ----------------------------------------------------------------------------

    def _expected_bars(self) -> dict[str, Any]:
        """Return the trading date's bar of each symbol as IB serves it now (none where it did not trade)."""
        served, now = self.simulator.served, self.simulator.simulator.now()
        expected = {}
        for listing in self.universe:
            if not self.simulator.model.sessions(listing.symbol, TRADING_DATE, TRADING_DATE):
                continue
            bar = served.daily_bar(listing.symbol, TRADING_DATE, now)
            if bar is not None:
                expected[listing.symbol] = stored_bar(bar)
        return expected

    def _false_no_data(self) -> int:
        """Count sessions settled as "no data" that IB's model says traded: an outage taken for no data."""
        with psycopg.connect(self.market_db) as conn:
            rows = conn.execute(
                """
                SELECT s.symbol, n.session FROM no_data_sessions n JOIN symbols s ON s.id = n.symbol_id
                WHERE n.timeframe = '1day' AND n.settled_at IS NOT NULL
                """
            ).fetchall()
        return sum(1 for symbol, session in rows if self.simulator.served.traded(symbol, session))

    def _stored_bars(self) -> dict[str, tuple[Any, ...]]:
        with psycopg.connect(self.market_db) as conn:
            rows = conn.execute(
                """
                SELECT s.symbol, md.timestamp, md.open, md.high, md.low, md.close, md.volume, md.wap,
                       md.bar_count
                FROM market_data md JOIN symbols s ON s.id = md.symbol_id
                WHERE md.timeframe = '1day' AND md.timestamp = %s
                """,
                (dt.datetime.combine(TRADING_DATE, dt.time()),),
            ).fetchall()
        return {row[0]: tuple(row[1:]) for row in rows}

    def _bars_lost(self) -> int:
        stored = self._stored_bars()
        return sum(
            1
            for symbol, bar in self._expected_bars().items()
            if stored.get(symbol)
            != (bar.timestamp, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap, bar.bar_count)
        )

    def _duplicates(self) -> int:
        with psycopg.connect(self.market_db) as conn:
            row = conn.execute(
                "SELECT COUNT(*) - COUNT(DISTINCT (symbol_id, timeframe, timestamp)) FROM market_data"
            ).fetchone()
        return int(row[0]) if row else 0

    def _unfinished(self, dag_id: str, run_id: str) -> int:
        """Symbols of the run whose latest attempt is still ``pending``."""
        with psycopg.connect(self.market_db) as conn:
            return repository.run_summary(conn, dag_id, run_id).get(AttemptStatus.PENDING, 0)

    def _retried(self, dag_id: str, run_id: str) -> int:
        return sum(1 for ti in self.stack.task_instances(dag_id, run_id) if ti["try_number"] > 1)


def _dag_of(index: int, scenario: Scenario) -> str:
    """Return the DAG of a scenario's index-th run: the backfill is the second when it overlaps."""
    return BACKFILL if scenario.overlapping_backfill and index == 1 else DAILY


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


def _pids_with_title(title: str) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title in cmdline:
            yield int(entry.name)


# -- results ------------------------------------------------------------------------------------


COLUMNS = (
    ("scenario", "scenario"),
    ("area", "area"),
    ("injected (when: once collect tasks ran, unless before the run)", "injected"),
    ("first run", "first_run"),
    ("recovered by", "recovered_by"),
    ("tasks retried", "tasks_retried"),
    ("bars expected", "bars_expected"),
    ("bars lost", "bars_lost"),
    ("duplicates", "duplicates"),
    ("unfinished", "unfinished"),
    ("IB rules broken", "ib_rules_broken"),
    ("refusals by design", "expected_refusals"),
    ("s to recover", "seconds_to_recover"),
    ("false no-data", "false_no_data"),
)


def markdown(results: dict[str, Any]) -> str:
    """Render campaign results as Markdown: the setup, then one row per scenario."""
    outcomes = results["outcomes"]
    lines = [
        "# Fault campaign results",
        "",
        "Written by `make faults` (`campaign/run.py`); "
        f"raw figures in `{results.get('raw_file', 'campaign/results.json')}`.",
        "",
        f"Measured {results['measured_at']} on {results['code']}: {results['symbols']} symbols, trading date "
        f"{results['trading_date']}, every simulator answer delayed {results['latency_ms']} ms, the hook's "
        f"request_timeout {results['request_timeout']} s, market-data statement_timeout "
        f"{results.get('statement_timeout_ms', STATEMENT_TIMEOUT_MS) / 1000:g} s; real scheduler, "
        f"{results.get('executor_text', 'LocalExecutor')}.",
        "",
        "| " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for outcome in outcomes:
        cells = [str(outcome.get(key, 0)).replace("|", "\\|") for _, key in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    clean = sum(
        1
        for o in outcomes
        if not (
            o["bars_lost"]
            or o["duplicates"]
            or o["unfinished"]
            or o["ib_rules_broken"]
            or o.get("false_no_data")
        )
    )
    lines += [
        "",
        f"{clean} of {len(outcomes)} scenarios end with nothing lost, duplicated, unfinished, broken "
        "or called no data.",
    ]
    notes = [f"- **{o['scenario']}**: {o['notes']}" for o in outcomes if o["notes"]]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def _result_files(executor: str) -> tuple[Path, Path]:
    """Return ``results.md`` / ``.json`` for the LocalExecutor, ``results-celery.*`` for Celery."""
    stem = "results" if executor == "local" else f"results-{executor}"
    return CAMPAIGN_DIR / f"{stem}.md", CAMPAIGN_DIR / f"{stem}.json"


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios asked for, writing the results after each; return 1 unless every one is clean."""
    parser = argparse.ArgumentParser(prog="make faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names (substrings)")
    parser.add_argument("--symbols", type=int, default=24)
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--request-timeout", type=int, default=10)
    parser.add_argument(
        "--executor", choices=("local", "celery"), default="local", help="celery: two workers, Redis broker"
    )
    options = parser.parse_args(argv)
    # The scenarios and their invariants are about daily bars; intraday bars are not in the campaign yet.
    os.environ.setdefault("IBKR_INTRADAY_MAX_PRIORITY", "0")
    wanted = [name.strip() for name in options.only.split(",") if name.strip()]
    scenarios = [
        s
        for s in SCENARIOS
        if (not wanted or any(w in s.name for w in wanted)) and options.executor in s.executors
    ]
    if not scenarios:
        parser.error(
            f"--only {options.only!r} matches no scenario; known: {', '.join(s.name for s in SCENARIOS)}"
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
        "statement_timeout_ms": STATEMENT_TIMEOUT_MS,
        "executor_text": "CeleryExecutor, 2 workers" if options.executor == "celery" else "LocalExecutor",
        "outcomes": [],
    }
    results_md, results_json = _result_files(options.executor)
    results["raw_file"] = f"campaign/{results_json.name}"
    with Campaign(options.symbols, options.latency_ms, options.request_timeout, options.executor) as campaign:
        for scenario in scenarios:
            outcome = campaign.run(scenario)
            log.info("%s: %s", scenario.name, asdict(outcome))
            results["outcomes"].append(asdict(outcome))
            results_json.write_text(json.dumps(results, indent=2) + "\n")
            results_md.write_text(markdown(results))
    print(markdown(results))
    return 0 if all(Outcome(**o).clean for o in results["outcomes"]) else 1


if __name__ == "__main__":
    sys.exit(main())
