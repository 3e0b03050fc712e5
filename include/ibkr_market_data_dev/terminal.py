"""What ``make run``, ``make collect`` and ``make backfill`` print: stages, progress, the summary.

Every log record (Airflow's task logs, the simulator's) goes to a file under ``.local/logs/``
instead of the terminal. See docs/development.md.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from ibkr_market_data_dev import local_env

log = logging.getLogger(__name__)

LOG_DIR = local_env.LOCAL_DIR / "logs"


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
