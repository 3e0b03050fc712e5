"""A daily run on the compose file's connections: the secrets backend and JSON it configures, nothing else.

The connections file holds ``market_data_db`` with a password of ``@:/%#"`` (the test server trusts
loopback, so the password is carried, not checked); ``ibkr_default`` is the compose file's JSON
pointed at the simulator. Real PostgreSQL, the simulator, dag.test(). See docs/production.md#secrets.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from tests.integration.conftest import SMALL_UNIVERSE

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2025, 1, 15)
HOSTILE = 'p@ss:/w%rd#1"'


@pytest.fixture
def compose_connections(
    tmp_path: Path, market_db: str, ibkr_connection, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Configure Airflow as the compose file does, with its secrets directory in ``tmp_path``."""
    from airflow.sdk.configuration import clear_secrets_backends_cache

    environment = yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))[
        "x-airflow-common"
    ]["environment"]
    db = urlsplit(market_db)
    connections = {
        "market_data_db": {
            "conn_type": "postgres",
            "host": db.hostname,
            "port": db.port,
            "schema": db.path.lstrip("/"),
            "login": db.username,
            "password": HOSTILE,
        }
    }
    (tmp_path / "airflow_connections.json").write_text(json.dumps(connections), encoding="utf-8")
    for name in ("AIRFLOW__SECRETS__BACKEND", "AIRFLOW__SECRETS__BACKEND_KWARGS"):
        monkeypatch.setenv(name, environment[name].replace("/run/secrets/", f"{tmp_path}/"))
    monkeypatch.delenv("AIRFLOW_CONN_MARKET_DATA_DB")
    ibkr = re.sub(
        r"\$\{IB_GATEWAY_API_PORT:-\d+\}", str(ibkr_connection.port), environment["AIRFLOW_CONN_IBKR_DEFAULT"]
    )
    ibkr = ibkr.replace('"ib-gateway"', json.dumps(ibkr_connection.host))
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", ibkr)
    clear_secrets_backends_cache()  # backends are built once per process: this test's, then the next's
    yield tmp_path
    clear_secrets_backends_cache()


def test_a_daily_run_reads_its_connections_from_the_compose_files_backend(
    daily_dag, small_universe, compose_connections, market_db, ibkr_connection
):
    from airflow.sdk import BaseHook

    assert BaseHook.get_connection("market_data_db").password == HOSTILE

    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "lookback_sessions": 1})

    assert dag_run.state == "success"
    with psycopg.connect(market_db) as conn:
        stored = conn.execute(
            "SELECT COUNT(*) FROM market_data WHERE timeframe = '1day' AND timestamp = %s",
            (dt.datetime.combine(DAY, dt.time()),),
        ).fetchone()[0]
    assert stored == len(SMALL_UNIVERSE)
