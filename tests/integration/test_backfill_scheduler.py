"""``airflow backfill create`` over the daily DAG, under the real scheduler (LocalExecutor)."""

import datetime as dt

import psycopg
import pytest

from ibkr_market_data import repository
from ibkr_market_data_dev.simulated_ib import stored_bar
from tests.fixtures.airflow_stack import STACK_UNIVERSE

pytestmark = pytest.mark.scheduler

DAG_ID = "daily_market_data"
ASX = {"BHP", "CBA"}
#: Friday, MLK day (ASX trades, the US does not), Tuesday; the weekend between gets no run.
TRADING_DATES = (dt.date(2025, 1, 17), dt.date(2025, 1, 20), dt.date(2025, 1, 21))


def backfill_create(stack, dag_id: str, *args: str) -> str:
    """Run ``airflow backfill create --dag-id DAG_ID ARGS`` against the stack (PostgreSQL metadata)."""
    return stack.cli("backfill", "create", "--dag-id", dag_id, *args)


def test_backfill_create_runs_each_trading_date_and_fetches_only_what_it_misses(
    airflow_stack, stack_market_db, stack_simulator
):
    airflow_stack.wait_for_dag(DAG_ID)
    already_stored = stored_bar(stack_simulator.model.daily_bar("AAPL", dt.date(2025, 1, 21)))
    with psycopg.connect(stack_market_db) as conn:
        [aapl] = repository.select_symbols(conn, symbols=["AAPL"])
        repository.upsert_bars(conn, aapl.id, "1day", [already_stored])
        conn.commit()
    airflow_stack.unpause(DAG_ID)  # backfill runs stay queued while the DAG is paused

    # Bare dates: this DAG's logical dates are midnight UTC of each trading date, so --to-date
    # 2025-01-21 includes the run of the 21st.
    backfill_create(
        airflow_stack,
        DAG_ID,
        "--from-date",
        "2025-01-17",
        "--to-date",
        "2025-01-21",
        "--max-active-runs",
        "2",
    )

    runs = [run for run in airflow_stack.dag_runs(DAG_ID) if run["run_type"] == "backfill"]
    assert sorted(run["logical_date"][:10] for run in runs) == [day.isoformat() for day in TRADING_DATES]
    finished = {
        run["logical_date"][:10]: airflow_stack.wait_for_run(DAG_ID, run["dag_run_id"], 600) for run in runs
    }
    assert {day: run["state"] for day, run in finished.items()} == dict.fromkeys(finished, "success")

    wanted_ends = {f"{day:%Y%m%d}" for day in TRADING_DATES}
    requests = [r for r in stack_simulator.request_log.historical() if r.end_date_time[:8] in wanted_ends]
    expected = (
        {("20250117", symbol) for symbol in STACK_UNIVERSE}
        | {("20250120", symbol) for symbol in ASX}
        | {("20250121", symbol) for symbol in STACK_UNIVERSE if symbol != "AAPL"}
    )
    assert sorted((r.end_date_time[:8], r.symbol) for r in requests) == sorted(expected), (
        "each missing bar, once"
    )
    assert {r.duration for r in requests} == {"1 D"}

    with psycopg.connect(stack_market_db) as conn:
        stored = conn.execute(
            """
            SELECT s.symbol, md.timestamp::date, md.close
            FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            WHERE md.timeframe = '1day' AND md.timestamp::date = ANY(%s)
            """,
            (list(TRADING_DATES),),
        ).fetchall()
        aapl_on_the_21st = conn.execute(
            """
            SELECT cl.status, cl.error_message, cl.requests_sent FROM collection_logs cl
            JOIN symbols s ON s.id = cl.symbol_id WHERE s.symbol = 'AAPL' AND cl.run_id = %s
            """,
            (finished["2025-01-21"]["dag_run_id"],),
        ).fetchall()
    assert {(symbol, day) for symbol, day, _ in stored} == {
        (symbol, dt.datetime.strptime(day, "%Y%m%d").date()) for day, symbol in expected
    } | {("AAPL", dt.date(2025, 1, 21))}
    assert all(close == stack_simulator.model.daily_bar(symbol, day).close for symbol, day, close in stored)
    assert aapl_on_the_21st == [("skipped", "already collected", 0)]
    assert stack_simulator.violations() == []
