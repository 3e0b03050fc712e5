"""What ``make run``, ``make collect`` and ``make backfill`` print: stages, progress, the summary.

Every log record (Airflow's task logs, the simulator's) goes to a file under ``.local/logs/``
instead of the terminal. See docs/development.md.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from ibkr_market_data_dev import local_env

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

LOG_DIR = local_env.LOCAL_DIR / "logs"
#: Task-instance states after which a task does nothing more in its run.
FINISHED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
FAILED_TASK_STATES = frozenset({"failed", "upstream_failed"})


def shown(path: Path) -> str:
    """Return ``path`` relative to the working directory when it lies below it, else in full."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def database_line(url: str) -> str:
    """Return the stage line naming the market-data database of ``url``, without its user or password."""
    parts = urlsplit(url)
    return f"database: {parts.path.lstrip('/')} on {parts.hostname}:{parts.port or 5432}"


def simulator_line(simulator: Any) -> str:
    """Return the stage line saying where IB is served: the simulator's address, or the configured gateway."""
    if simulator is None:
        return "IB: ibkr_default as configured"
    return f"simulator: TWS simulator listening on {simulator.host}:{simulator.port}"


def _handlers() -> Iterator[logging.Handler]:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    seen: set[int] = set()
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if id(handler) not in seen:
                seen.add(id(handler))
                yield handler


def _is_terminal(stream: object) -> bool:
    return stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)


@contextmanager
def logs_to_file(path: Path) -> Iterator[Path]:
    """Write every log record of this process to ``path`` (replaced), not the terminal, while the block runs.

    Call after Airflow configured logging (it replaces the handlers when it does). Handlers that
    write to stdout or stderr write to the file instead, and so do structlog's loggers (Airflow's
    task logs); both are put back on exit. Printed lines still reach the terminal.
    """
    import structlog

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as log_file:
        moved = []
        for handler in _handlers():
            if isinstance(handler, logging.StreamHandler) and _is_terminal(handler.stream):
                try:
                    moved.append((handler, handler.setStream(log_file)))
                except AttributeError:  # a last-resort handler: its stream is always stderr
                    continue
        if not moved:  # nothing configured: Python's last-resort handler would print warnings
            logging.getLogger().addHandler(fallback := logging.StreamHandler(log_file))
        factory = structlog.get_config()["logger_factory"]
        structlog.configure(logger_factory=_writing_to(factory, log_file))
        try:
            yield path
        finally:
            structlog.configure(logger_factory=factory)
            for handler, previous in moved:
                handler.setStream(previous)
            if not moved:
                logging.getLogger().removeHandler(fallback)


def _writing_to(factory: Any, stream: TextIO) -> Any:
    """Return a structlog logger factory like ``factory`` whose loggers write to ``stream``."""
    import structlog

    if hasattr(factory, "io"):  # Airflow's factory: a copy keeps the logger names in its lines
        moved = copy.copy(factory)
        moved.io = stream
        return moved
    return structlog.WriteLoggerFactory(stream)


class ProgressLine:
    """Show a run's progress: rewritten in place on a terminal, else a line when it changed, now and then.

    Off a terminal the interval doubles after every ``lines_per_interval`` lines, so a long run adds
    a few lines per doubling of its length rather than one per interval.

    :param stream: where to print (default: stdout).
    :param every: first seconds between updates when ``stream`` is not a terminal (2 s when it is).
    :param clock: monotonic seconds; tests pass their own.
    """

    lines_per_interval = 4

    def __init__(
        self, stream: TextIO | None = None, every: float = 15.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.every = 2.0 if self.tty else every
        self.clock = clock
        self.last_time = clock()  # the first line after one interval: a short run shows only its end
        self.last_text = ""
        self.lines = 0

    def update(self, text: Callable[[], str], final: bool = False) -> None:
        """Show ``text()`` if an interval has passed or ``final``; ``text`` is only called then."""
        if not final and self.clock() - self.last_time < self.every:
            return
        self.last_time = self.clock()
        try:
            line = text()
        except OSError as exc:  # a busy API server missed its read timeout: the run goes on regardless
            log.warning("Could not show the progress: %s", exc)
            if not final:
                return
            line = self.last_text
        if self.tty:
            self.stream.write(f"\r\x1b[K{line}" + ("\n" if final else ""))
        elif line != self.last_text:
            self.stream.write(line + "\n")
            self.lines += 1
            if self.lines % self.lines_per_interval == 0:
                self.every *= 2
        self.last_text = line
        self.stream.flush()


def progress_text(task_states: Iterable[str | None], bars_stored: int, symbols_failed: int) -> str:
    """Return ``progress: 12/40 tasks done, 3456 bars stored, 0 symbols failed`` (and failed tasks if any)."""
    states = list(task_states)
    done = sum(state in FINISHED_TASK_STATES for state in states)
    failed = sum(state in FAILED_TASK_STATES for state in states)
    text = f"progress: {done}/{len(states)} tasks done, {bars_stored} bars stored, "
    text += f"{symbols_failed} symbols failed"
    return text + (f", {failed} tasks failed" if failed else "")


def stored_so_far(conn: psycopg.Connection, dag_id: str, run_id: str) -> tuple[int, int]:
    """Return the bars run ``run_id`` of ``dag_id`` stored so far and how many of its symbols failed."""
    from ibkr_market_data import repository
    from ibkr_market_data.repository.collection_logs import AttemptStatus

    failed = repository.run_summary(conn, dag_id, run_id).get(AttemptStatus.FAILED, 0)
    return repository.run_records_collected(conn, dag_id, run_id), failed


def follow_stack_run(
    stack: Any, dag_id: str, run_id: str, market_db_url: str, progress: ProgressLine | None = None
) -> dict[str, Any]:
    """Wait for run ``run_id`` of ``dag_id`` on an ``AirflowStack``, showing its progress; return the run.

    Tasks come from Airflow's REST API, bars and failures from the market-data database. While the
    run is queued behind another run of the DAG (the scheduled one, after unpausing), that one's.
    """
    import psycopg

    progress = progress or ProgressLine()
    with psycopg.connect(market_db_url, autocommit=True) as conn:

        def text(run: dict[str, Any]) -> str:
            if run["state"] == "queued":
                running = [
                    other["dag_run_id"] for other in stack.dag_runs(dag_id) if other["state"] == "running"
                ]
                if running:
                    bars, failed = stored_so_far(conn, dag_id, running[0])
                    return (
                        f"progress: queued behind {running[0]}: {bars} bars stored, {failed} symbols failed "
                        "so far"
                    )
            states = [instance["state"] for instance in stack.task_instances(dag_id, run_id)]
            return progress_text(states, *stored_so_far(conn, dag_id, run_id))

        run = stack.wait_for_run(dag_id, run_id, on_poll=lambda run: progress.update(lambda: text(run)))
        progress.update(lambda: text(run), final=True)
    return run


def runs_ahead(stack: Any, dag_id: str, run: dict[str, Any]) -> list[str]:
    """Return the ids of the other runs of ``dag_id`` that ended after ``run`` was queued: they went first."""
    queued_at = dt.datetime.fromisoformat(run["queued_at"])
    return [
        other["dag_run_id"]
        for other in stack.dag_runs(dag_id)
        if other["dag_run_id"] != run["dag_run_id"]
        and other["end_date"]
        and dt.datetime.fromisoformat(other["end_date"]) > queued_at
    ]


def run_line(market_db_url: str, dag_id: str, run_id: str, note: str = "") -> str:
    """Return ``run RUN_ID (note): completed 7, failed 1; 7 bars stored`` from the market-data database."""
    import psycopg

    from ibkr_market_data import repository

    with psycopg.connect(market_db_url) as conn:
        counts = repository.run_summary(conn, dag_id, run_id)
        bars = repository.run_records_collected(conn, dag_id, run_id)
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "nothing to do"
    return f"run {run_id}{f' ({note})' if note else ''}: {statuses}; {bars} bars stored"


class _RunListener:
    """Airflow listener showing an in-process run's progress when a task or the run ends (``dag.test()``)."""

    def __init__(self, market_db_url: str, progress: ProgressLine) -> None:
        self.market_db_url = market_db_url
        self.progress = progress

    def show(self, dag_id: str, run_id: str, final: bool = False) -> None:
        # Called inside Airflow's task runner: a failure here must never fail the task.
        try:
            self.progress.update(lambda: self._text(dag_id, run_id), final=final)
        except Exception:
            log.exception("Could not show the progress of run %s", run_id)

    def _text(self, dag_id: str, run_id: str) -> str:
        import psycopg
        from airflow import settings
        from airflow.models.taskinstance import TaskInstance
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        # A session of its own: the run's session belongs to dag.test() and must not be committed here.
        with Session(settings.engine) as session:
            states = session.scalars(
                select(TaskInstance.state).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            ).all()
        with psycopg.connect(self.market_db_url) as conn:
            return progress_text(states, *stored_so_far(conn, dag_id, run_id))


def _listeners(market_db_url: str, progress: ProgressLine) -> tuple[_RunListener, _RunListener]:
    """Return the task and DAG-run listeners; defined here since ``hookimpl`` imports Airflow."""
    from airflow.listeners import hookimpl

    class TaskListener(_RunListener):
        @hookimpl
        def on_task_instance_success(self, task_instance: Any) -> None:
            self.show(task_instance.dag_id, task_instance.run_id)

        @hookimpl
        def on_task_instance_failed(self, task_instance: Any) -> None:
            self.show(task_instance.dag_id, task_instance.run_id)

        @hookimpl
        def on_task_instance_skipped(self, task_instance: Any) -> None:
            self.show(task_instance.dag_id, task_instance.run_id)

    class DagRunListener(_RunListener):
        @hookimpl
        def on_dag_run_success(self, dag_run: Any) -> None:
            self.show(dag_run.dag_id, dag_run.run_id, final=True)

        @hookimpl
        def on_dag_run_failed(self, dag_run: Any) -> None:
            self.show(dag_run.dag_id, dag_run.run_id, final=True)

    return TaskListener(market_db_url, progress), DagRunListener(market_db_url, progress)


@contextmanager
def in_process_progress(market_db_url: str, progress: ProgressLine | None = None) -> Iterator[None]:
    """Show the progress of the runs ``dag.test()`` makes while the block runs, the last line as each ends.

    Tasks come from Airflow's metadata database, bars and failures from the market-data database.
    """
    from airflow.listeners.listener import get_listener_manager
    from airflow.sdk.listener import get_listener_manager as get_task_listener_manager

    task_listener, dag_run_listener = _listeners(market_db_url, progress or ProgressLine())
    registered: list[tuple[Any, _RunListener]] = [
        (get_task_listener_manager(), task_listener),
        (get_listener_manager(), dag_run_listener),
    ]
    for manager, listener in registered:
        manager.add_listener(listener)
    try:
        yield
    finally:
        for manager, listener in registered:
            manager.pm.unregister(listener)
