"""``make run``: the whole stack on this machine, on embedded defaults, and one daily run.

The simulator, PostgreSQL, Airflow on http://localhost:8080 (LocalExecutor, or Celery with
``--executor celery``) started while the universe loads, then the scheduler's run of the latest
trading date followed, its progress and summary printed. See docs/development.md#the-local-stack.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from ibkr_market_data_dev import airflow_login, local_env, terminal
from ibkr_market_data_dev.simulated_ib import local_universe

log = logging.getLogger("ibkr_market_data_dev.local_stack")

DAG_ID = "daily_market_data"
#: How long to wait, after unpausing, for the scheduler to queue the latest trading date's run.
SCHEDULED_RUN_WAIT_SECONDS = 30


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the stack and one daily run as the module docstring says; return the exit status."""
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")))
    parser.add_argument("--exit-after-run", action="store_true", help="stop the stack after the first run")
    parser.add_argument("--executor", choices=("local", "celery"), default="local")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (with --executor celery)")
    args = parser.parse_args(argv)
    # Until the log file takes over, only warnings reach the terminal.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # SIGTERM (from `timeout`, a supervisor) must unwind like Ctrl-C so the stack is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    since = dt.datetime.now(dt.UTC)
    configured_metadata = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")  # before the defaults
    home = local_env.configure_airflow()
    from ibkr_market_data import cli
    from ibkr_market_data_dev.airflow_stack import AirflowStack

    if args.workers < 1:
        parser.error(f"argument --workers: {args.workers} is not a number of workers (1 or more)")
    try:
        local_env.check_local_setup()
        broker_url = local_env.celery_broker_url() if args.executor == "celery" else None
    except local_env.LocalSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with terminal.logs_to_file(terminal.LOG_DIR / "run.log") as log_file:
        print(f"log: {terminal.shown(log_file)} (this process and the simulator)")
        market_db_url = local_env.ensure_market_db()
        print(terminal.database_line(market_db_url))
        with local_env.local_ibkr(port=int(os.environ.get("IBKR_SIM_PORT", "4002"))) as simulator:
            print(terminal.simulator_line(simulator))
            fernet_key = local_env.home_fernet_key(home)
            metadata_url = configured_metadata or local_env.airflow_metadata_url(fernet_key)
            stack = AirflowStack(
                home,
                port=args.port,
                env={
                    # Connections configured elsewhere (the metadata database) are not overridden.
                    **{
                        name: os.environ[name]
                        for name in ("AIRFLOW_CONN_MARKET_DATA_DB", "AIRFLOW_CONN_IBKR_DEFAULT")
                        if name in os.environ
                    },
                    "AIRFLOW__CORE__DAGS_FOLDER": str(local_env.REPO_ROOT / "dags"),
                    "AIRFLOW__CORE__PLUGINS_FOLDER": str(local_env.REPO_ROOT / "plugins"),
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
                    "AIRFLOW__CORE__FERNET_KEY": fernet_key,
                },
                executor=args.executor,
                workers=args.workers,
                broker_url=broker_url,
            )
            workers = f" with {args.workers} Celery workers" if args.executor == "celery" else ""
            print(
                f"Airflow: starting in {terminal.shown(home)}{workers} "
                f"(log: {terminal.shown(stack.log_file)}); its UI answers in ~40 s"
            )
            # Airflow starts while the universe loads: the DAG stays paused until the symbols are in.
            starting = _Starting(stack)
            try:
                cli.load_symbols_command(universe=local_universe())  # migrates first
                starting.wait()
                return _first_run(stack, market_db_url, args.exit_after_run, since)
            finally:
                stack.stop()


class _Starting:
    """``AirflowStack.start`` on a thread of its own; ``wait()`` joins it, raising what it raised."""

    def __init__(self, stack: Any) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, args=(stack,), name="airflow-start", daemon=True)
        self._thread.start()

    def _start(self, stack: Any) -> None:
        try:
            stack.start()
        except BaseException as exc:  # handed to the main thread by wait()
            self._error = exc

    def wait(self) -> None:
        """Wait until Airflow answers; raise the error that stopped it from starting."""
        self._thread.join()
        if self._error is not None:
            raise self._error


def scheduled_run(stack: Any, since: dt.datetime, timeout: float = SCHEDULED_RUN_WAIT_SECONDS) -> str | None:
    """Return the run the scheduler queued for the latest trading date after ``since``; None if none came.

    Unpausing the DAG makes the scheduler queue its latest trading date at once, unless this Airflow
    home already ran that date (a second ``make run``): then nothing comes, and the caller triggers.
    """
    deadline = time.monotonic() + timeout
    while True:
        for run in stack.dag_runs(DAG_ID):
            queued = run.get("queued_at")
            if run["run_type"] == "scheduled" and queued and dt.datetime.fromisoformat(queued) >= since:
                return str(run["dag_run_id"])
        if time.monotonic() > deadline:
            return None
        time.sleep(1)


def _first_run(stack: Any, market_db_url: str, exit_after_run: bool, since: dt.datetime) -> int:
    from ibkr_market_data import cli

    print(f"Airflow up at {stack.base_url} ({airflow_login.login_hint(stack)})")
    stack.import_pools(local_env.REPO_ROOT / "pools.json")
    stack.import_connections(local_env.REPO_ROOT / "connections.json")
    stack.wait_for_dag(DAG_ID)
    stack.unpause(DAG_ID)
    run_id = scheduled_run(stack, since)
    if run_id is not None:
        print(f"run started by the scheduler: {DAG_ID} {run_id}; follow it on {stack.base_url}/dags/{DAG_ID}")
    else:
        run_id = stack.trigger(DAG_ID)
        print(f"run triggered: {DAG_ID} {run_id}; follow it on {stack.base_url}/dags/{DAG_ID}")
    run = terminal.follow_stack_run(stack, DAG_ID, run_id, market_db_url)
    for other in terminal.runs_ahead(stack, DAG_ID, run):
        print(terminal.run_line(market_db_url, DAG_ID, other, note="ran first"))
    cli.print_run_summary(DAG_ID, run_id)
    print(f"state: {run['state']}")
    if exit_after_run:
        return 0 if run["state"] == "success" else 1
    print(f"Airflow UI: {stack.base_url} ({airflow_login.login_hint(stack)}). Ctrl-C stops everything.")
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
