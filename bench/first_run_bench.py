"""The first ``make run ARGS=--exit-after-run`` on a warm install: command to the first run's summary.

Each repeat runs in a fresh export of HEAD that shares this checkout's installed virtualenv, with a
fresh Airflow home and free ports. See docs/benchmarks.md#first-run.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from bench.daily_bench import free_port
from bench.figures import verdict
from ibkr_market_data_dev import local_postgres
from ibkr_market_data_dev.local_env import MARKET_DATA_DATABASE, REPO_ROOT

log = logging.getLogger(__name__)

#: The goal: the first run's summary within a minute of the command.
GOAL_SECONDS = 60.0
TIMEOUT_SECONDS = 900
#: Lines of ``make run`` whose arrival times are recorded (the last one ends the measurement).
MILESTONES = {
    "Airflow: starting": "airflow_starting_s",
    "Airflow up at": "airflow_up_s",
    "run triggered": "run_followed_s",
    "run started by the scheduler": "run_followed_s",
}
SUMMARY_LINE = "state: "


def export_head(target: Path) -> None:
    """Write the committed tree of HEAD into ``target`` and share this checkout's installed virtualenv."""
    archive = subprocess.run(
        ["git", "archive", "HEAD"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    target.mkdir(parents=True)
    archive_file = target / ".head.tar"
    archive_file.write_bytes(archive)
    with tarfile.open(archive_file) as tar:
        tar.extractall(target, filter="data")
    archive_file.unlink()
    (target / ".venv").symlink_to(REPO_ROOT / ".venv")


def stored_bars() -> int | None:
    """Return the bars the machine's local ``market_data`` database holds; None when it does not exist."""
    server = local_postgres.server_url()
    with psycopg.connect(server, autocommit=True) as conn:
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (MARKET_DATA_DATABASE,)
        ).fetchone():
            return None
    url = urlsplit(server)._replace(path=f"/{MARKET_DATA_DATABASE}").geturl()
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('market_data')").fetchone() == (None,):
            return 0
        row = conn.execute("SELECT COUNT(*) FROM market_data").fetchone()
    return int(row[0]) if row else 0


def _databases() -> set[str]:
    with psycopg.connect(local_postgres.server_url(), autocommit=True) as conn:
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database").fetchall()}


def drop_created(before: set[str], home: Path) -> list[str]:
    """Drop what this repeat's ``make run`` created: ``market_data`` if new, and its home's metadata database.

    Only those two names: other databases appearing meanwhile belong to someone else on this machine.
    """
    from psycopg import sql

    from ibkr_market_data_dev.local_env import airflow_metadata_database

    ours = {MARKET_DATA_DATABASE}
    key_file = home / "fernet.key"
    if key_file.exists():
        ours.add(airflow_metadata_database(key_file.read_text().strip()))
    created = sorted((_databases() - before) & ours)
    with psycopg.connect(local_postgres.server_url(), autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return created


def measure_once(workdir: Path) -> dict[str, Any]:
    """Run ``make run ARGS=--exit-after-run`` in a fresh export; the seconds to each milestone."""
    clone = workdir / "clone"
    export_head(clone)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "IBKR_SIM"))}
    env |= {"AIRFLOW_PORT": str(free_port()), "IBKR_SIM_PORT": str(free_port())}
    bars_before = stored_bars()
    databases_before = _databases()
    figures: dict[str, Any] = {"bars_before": bars_before}
    started = time.perf_counter()
    # -o: the shared virtualenv is installed; the export's newer requirement files must not rebuild it.
    process = subprocess.Popen(
        ["make", "-o", ".venv/.installed", "run", "ARGS=--exit-after-run"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        elapsed = round(time.perf_counter() - started, 1)
        tail = (tail + [line.rstrip()])[-60:]
        for prefix, key in MILESTONES.items():
            if line.startswith(prefix) and key not in figures:
                figures[key] = elapsed
        if line.startswith(SUMMARY_LINE):
            figures["summary_s"] = elapsed
            figures["state"] = line[len(SUMMARY_LINE) :].strip()
    figures["exit_code"] = process.wait(timeout=TIMEOUT_SECONDS)
    figures["exit_s"] = round(time.perf_counter() - started, 1)
    # The next repeat is a first run too: what this one created goes (never what was there before).
    figures["dropped_databases"] = drop_created(databases_before, clone / ".local" / "airflow")
    figures["output_tail"] = tail
    # A first run collects what the shipped default plans; bars already stored mean less work.
    figures["verified"] = figures["exit_code"] == 0 and figures.get("state") == "success" and not bars_before
    return figures


def run(repeats: int = 3) -> dict[str, Any]:
    """Measure ``repeats`` first runs, each from a fresh export; the median against the 60 s goal."""
    runs = []
    for repeat in range(repeats):
        workdir = Path(tempfile.mkdtemp(prefix="ibkr-market-data-first-run-"))
        try:
            runs.append(measure_once(workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        log.info("First run %d: %s", repeat + 1, runs[-1])
    seconds = [run["summary_s"] for run in runs if "summary_s" in run]
    result = verdict(seconds, GOAL_SECONDS, [run["verified"] for run in runs if "summary_s" in run])
    if len(seconds) < len(runs) and result["median"] is not None:
        result |= {
            "met": None,
            "reason": f"{len(runs) - len(seconds)} of {len(runs)} runs printed no summary",
        }
    return {
        "runs": runs,
        "summary_s": result,
        "note": "A repeat whose machine-wide market_data database already held bars did less than a "
        "first run's work: it is not verified.",
    }
