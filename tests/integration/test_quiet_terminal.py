"""``make run`` and ``make collect`` print stages, progress and what was stored; log records go to a file.

The commands run as a person runs them: in a process of their own, on the embedded defaults (the
simulator in-process), their market-data database a throwaway one on the test server; ``make run``
loads a few symbols rather than the shipped universe, for a shorter run.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from ibkr_market_data_dev import local_postgres, terminal
from ibkr_market_data_dev.local_env import REPO_ROOT
from tests.fixtures.airflow_stack import STACK_UNIVERSE, free_port

CLIENT_LINE = re.compile(r"Client \d+ (connected|disconnected)")

_LOCAL_COMMAND = """
import pathlib, sys
from ibkr_market_data_dev import local_env, local_postgres, terminal
local_env.MARKET_DATA_DATABASE = {database!r}
local_postgres.server_url = lambda: {server!r}
terminal.LOG_DIR = pathlib.Path({log_dir!r})
from ibkr_market_data_dev import {module}
if {symbols!r}:  # a smaller universe than the shipped one, for a shorter run
    shipped = {module}.local_universe
    {module}.local_universe = lambda: [s for s in shipped() if s.symbol in {symbols!r}]
sys.exit({module}.main({argv!r}))
"""


@pytest.fixture
def local_database(market_db_server: str) -> Iterator[str]:
    """Name a throwaway database for a local command to create as its ``market_data``; drop it after."""
    name = f"ibkr_market_data_test_{secrets.token_hex(4)}"
    yield name
    parts = urlsplit(market_db_server)
    local_postgres.drop_database(urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, "")))


def run_local(
    module: str,
    argv: list[str],
    *,
    database: str,
    server: str,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    symbols: tuple[str, ...] = (),
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run ``ibkr_market_data_dev.<module>`` as ``make`` does, on ``database`` and a fresh Airflow home."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW_CONN_", "AIRFLOW__DATABASE__", "AIRFLOW_HOME", "PYTEST"))
    }
    environment.update({"AIRFLOW_HOME": str(tmp_path / "airflow"), **(env or {})})
    code = _LOCAL_COMMAND.format(
        database=database,
        server=server,
        log_dir=str(tmp_path / "logs"),
        module=module,
        argv=argv,
        symbols=symbols,
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_make_collect_prints_stages_progress_and_the_summary_and_logs_the_rest(
    local_database: str, market_db_server: str, tmp_path: Path
) -> None:
    result = run_local(
        "local_cli",
        ["collect", "--date", "2025-01-15", "--symbols", "AAPL,BHP"],
        database=local_database,
        server=market_db_server,
        tmp_path=tmp_path,
        timeout=300,
    )
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(lines) <= 15, "\n".join(lines)
    assert lines[0] == f"log: {tmp_path / 'logs' / 'collect.log'} (Airflow's task logs and the simulator's)"
    assert lines[1] == f"database: {local_database} on {urlsplit(market_db_server).hostname}:" + str(
        urlsplit(market_db_server).port or 5432
    )
    assert lines[2].startswith("simulator: TWS simulator listening on 127.0.0.1:")
    assert lines[3].startswith("symbols: 320 in the universe")
    progress = [line for line in lines if line.startswith("progress: ")][-1]
    assert re.fullmatch(r"progress: (\d+)/\1 tasks done, [1-9]\d* bars stored, 0 symbols failed", progress)
    [summary] = [line for line in lines[lines.index(progress) :] if line.startswith("run manual__")]
    assert re.fullmatch(r"run manual__\S+: completed 2; [1-9]\d* bars stored", summary)
    assert lines[-1] == "state: success"
    assert not [line for line in lines if CLIENT_LINE.search(line) or "[DAG TEST]" in line]
    log = (tmp_path / "logs" / "collect.log").read_text()
    assert "Trading date 2025-01-15" in log and "[DAG TEST] end task" in log


def test_in_process_progress_shows_each_task_end_and_the_run_end(
    daily_dag, small_universe, market_db: str, ibkr_connection
) -> None:
    out = io.StringIO()
    with terminal.in_process_progress(market_db, terminal.ProgressLine(out, every=0)):
        dag_run = daily_dag.test(run_conf={"date": "2025-01-15"})
    assert dag_run.state == "success"

    with psycopg.connect(market_db) as conn:
        [(bars,)] = conn.execute(
            "SELECT SUM(records_collected) FROM collection_logs WHERE run_id = %s", (dag_run.run_id,)
        ).fetchall()
    tasks = len(dag_run.get_task_instances())
    lines = out.getvalue().splitlines()
    assert lines[-1] == f"progress: {tasks}/{tasks} tasks done, {bars} bars stored, 0 symbols failed"
    done = [int(re.match(r"progress: (\d+)/", line).group(1)) for line in lines]
    assert len(done) >= 3 and done == sorted(done), lines


def test_a_progress_line_that_cannot_be_worked_out_is_logged_and_the_run_goes_on(
    daily_dag, small_universe, market_db: str, ibkr_connection, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    unreachable = f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2"
    with terminal.in_process_progress(unreachable, terminal.ProgressLine(out, every=0)):
        dag_run = daily_dag.test(run_conf={"date": "2025-01-15"})
    assert dag_run.state == "success"
    assert out.getvalue() == ""
    assert any(record.getMessage().startswith("Could not show the progress") for record in caplog.records)


@pytest.mark.scheduler
def test_make_run_prints_at_most_40_lines_ending_with_what_was_stored(
    local_database: str, market_db_server: str, tmp_path: Path
) -> None:
    metadata = local_postgres.create_database(market_db_server)
    try:
        from ibkr_market_data.schema import sqlalchemy_url

        result = run_local(
            "local_stack",
            ["--exit-after-run", "--port", str(free_port())],
            database=local_database,
            server=market_db_server,
            tmp_path=tmp_path,
            env={"IBKR_SIM_PORT": "0", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(metadata)},
            symbols=STACK_UNIVERSE,
            timeout=900,
        )
    finally:
        local_postgres.drop_database(metadata)
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(lines) <= 40, "\n".join(lines)
    stages = ["log:", "database:", "simulator: TWS simulator listening on", "Airflow: starting", "symbols:"]
    # A fresh home: make run follows the scheduler's own run of the latest date, triggering none.
    stages += [
        "Airflow up at http://127.0.0.1:",
        "run started by the scheduler: daily_market_data scheduled__",
    ]
    assert len(lines) > len(stages) and all(map(str.startswith, lines, stages)), "\n".join(lines)
    assert any(line.startswith("progress: ") for line in lines)
    assert not [line for line in lines if CLIENT_LINE.search(line)]
    summary = lines[[i for i, line in enumerate(lines) if line.startswith("progress: ")][-1] + 1 :]
    assert summary[-1] == "state: success"
    assert any(re.search(r"; [1-9]\d* bars stored$", line) for line in summary), summary
