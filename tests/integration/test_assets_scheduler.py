"""Asset events under the real scheduler: the daily DAG completes NASDAQ's session, the example consumer runs.

A stack of its own, whose dags folder holds the daily DAG and docs/examples/nasdaq_consumer_dag.py,
over three symbols: AAPL and MSFT (NASDAQ) and BHP (ASX).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest

from ibkr_market_data import schema
from ibkr_market_data_dev import local_postgres
from ibkr_market_data_dev.airflow_stack import AirflowStack
from ibkr_market_data_dev.local_env import REPO_ROOT
from tests.fixtures.airflow_stack import running_stack

pytestmark = pytest.mark.scheduler

DAILY = "daily_market_data"
CONSUMER = "nasdaq_daily_consumer"
UNIVERSE = ("AAPL", "MSFT", "BHP")
DAY = dt.date(2025, 1, 15)
#: One session, daily bars only: the smallest run that completes an exchange.
PARAMS = {"date": DAY.isoformat(), "lookback_sessions": 1, "timeframe": "1day"}


@pytest.fixture(scope="module")
def consumer_stack(market_db_server, stack_simulator, tmp_path_factory) -> Iterator[tuple[AirflowStack, str]]:
    dags = tmp_path_factory.mktemp("dags")
    shutil.copy(REPO_ROOT / "dags" / "daily_market_data.py", dags)
    shutil.copy(REPO_ROOT / "docs" / "examples" / "nasdaq_consumer_dag.py", dags)
    market_db = local_postgres.create_database(market_db_server)
    metadata_db = local_postgres.create_database(market_db_server)
    try:
        schema.upgrade(market_db)
        with running_stack(
            market_db, metadata_db, stack_simulator, UNIVERSE, env={"AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
        ) as stack:
            yield stack, market_db
    finally:
        local_postgres.drop_database(market_db)
        local_postgres.drop_database(metadata_db)


def events_of(stack: AirflowStack, run_id: str) -> dict[str, dict[str, Any]]:
    """Return the asset events run ``run_id`` of the daily DAG emitted, by asset name."""
    query = urlencode({"source_dag_id": DAILY, "source_run_id": run_id})  # a run id holds '+' and ':'
    found = stack._request("GET", f"/api/v2/assets/events?{query}")
    return {event["name"]: event for event in found["asset_events"]}


def test_a_daily_run_that_completes_nasdaq_triggers_the_consumer_and_one_that_does_not_emits_nothing(
    consumer_stack,
):
    stack, market_db = consumer_stack
    stack.wait_for_dag(DAILY)
    stack.wait_for_dag(CONSUMER)
    stack.unpause(CONSUMER)

    # AAPL and BHP only: ASX's session is complete, NASDAQ's lacks MSFT.
    partial = stack.trigger(DAILY, {**PARAMS, "symbols": ["AAPL", "BHP"]})
    stack.unpause(DAILY)
    assert stack.wait_for_run(DAILY, partial, 600)["state"] == "success"
    partial_events = events_of(stack, partial)
    assert sorted(partial_events) == ["market_data/ASX/1day"]
    assert partial_events["market_data/ASX/1day"]["extra"]["sessions"] == [DAY.isoformat()]

    # Every symbol: MSFT is collected (AAPL and BHP are stored already), so NASDAQ is complete.
    complete = stack.trigger(DAILY, PARAMS)
    assert stack.wait_for_run(DAILY, complete, 600)["state"] == "success"
    complete_events = events_of(stack, complete)
    assert sorted(complete_events) == ["market_data/NASDAQ/1day"], "ASX had nothing new: no second event"
    nasdaq = complete_events["market_data/NASDAQ/1day"]
    assert {key: nasdaq["extra"][key] for key in ("sessions", "symbols", "stored", "no_data")} == {
        "sessions": [DAY.isoformat()],
        "symbols": 2,
        "stored": 2,
        "no_data": 0,
    }

    [created] = nasdaq["created_dagruns"]
    assert created["dag_id"] == CONSUMER
    consumer_run = stack.wait_for_run(CONSUMER, created["run_id"], 300)
    assert consumer_run["state"] == "success"
    read = stack._request(
        "GET",
        f"/api/v2/dags/{CONSUMER}/dagRuns/{quote(created['run_id'])}/taskInstances/read_new_sessions"
        "/xcomEntries/return_value",
    )["value"]
    with psycopg.connect(market_db) as conn:
        closes = dict(
            conn.execute(
                """
                SELECT s.symbol, md.close::float8 FROM market_data md JOIN symbols s ON s.id = md.symbol_id
                WHERE md.timeframe = '1day' AND md.timestamp = %s AND s.primary_exchange = 'NASDAQ'
                """,
                (dt.datetime.combine(DAY, dt.time()),),
            ).fetchall()
        )
    assert read["sessions"] == [DAY.isoformat()]
    assert read["symbols"] == ["AAPL", "MSFT"] and read["bars"] == 2
    assert read["last_closes"] == closes
