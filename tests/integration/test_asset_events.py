"""Which assets a run completed, read from a real PostgreSQL, and the events attached for them.

The events go into Airflow's own ``OutletEventAccessors``, as in a running task; the scheduler test
(tests/integration/test_assets_scheduler.py) shows them reach a consumer DAG.
"""

from __future__ import annotations

import logging

import pytest
from airflow.sdk import Asset
from airflow.sdk.execution_time.context import OutletEventAccessors

from ibkr_market_data.assets import MARKET_DATA_ALIAS, asset_name, market_data_asset
from ibkr_market_data.errors import UnknownExchangeError, UnknownTimeframeError
from ibkr_market_data.repository import RunContext, SymbolRow
from ibkr_market_data.tasks import assets
from tests.integration.operations.conftest import (
    D13,
    D14,
    D15,
    D16,
    insert_attempt,
    insert_bar,
    insert_symbols,
)

RUN = RunContext("daily_market_data", "manual__2025-01-16")


def alias_events(outlet_events: OutletEventAccessors) -> dict[str, dict]:
    return {
        event.dest_asset_key.name: event.extra
        for event in outlet_events[MARKET_DATA_ALIAS].asset_alias_events
    }


@pytest.fixture
def ids(db_conn):
    return insert_symbols(db_conn)  # AAPL, MSFT (NASDAQ), SPY (ARCA), BHP, GYG (ASX), OLD inactive


def test_a_run_emits_for_the_exchange_it_completed_and_not_for_the_one_it_left_incomplete(
    ids, db_conn, caplog
):
    # The 16th: ASX's two symbols stored by this run; on NASDAQ AAPL is stored and MSFT failed.
    for symbol in ("BHP", "GYG", "AAPL"):
        insert_bar(db_conn, ids[symbol], D16)
        insert_attempt(db_conn, ids[symbol], D16, "completed", run_id=RUN.run_id, records=1)
    insert_attempt(db_conn, ids["MSFT"], D16, "failed", run_id=RUN.run_id, error_code=354)
    db_conn.commit()

    completions = assets.run_completions(db_conn, RUN, assets.daily_sessions(D16.isoformat()))
    outlet_events = OutletEventAccessors()
    with caplog.at_level(logging.INFO, logger=assets.__name__):
        emitted = assets.emit_events(outlet_events, completions, RUN)

    assert emitted == ["market_data/ASX/1day"]
    assert alias_events(outlet_events) == {
        "market_data/ASX/1day": {
            "exchange": "ASX",
            "timeframe": "1day",
            "sessions": ["2025-01-16"],
            "symbols": 2,
            "stored": 2,
            "no_data": 0,
            "bars_collected": 2,
            "dag_id": RUN.dag_id,
            "run_id": RUN.run_id,
        }
    }
    # ARCA: the run did nothing there, so it is not even looked at.
    assert {(item.exchange, item.complete) for item in completions} == {("ASX", True), ("NASDAQ", False)}
    assert "No asset event for market_data/NASDAQ/1day (2025-01-16): 1 of 2 symbols not collected: MSFT" in (
        caplog.text
    )


def test_once_the_missing_symbol_is_stored_the_next_run_emits_for_its_exchange(ids, db_conn):
    insert_bar(db_conn, ids["AAPL"], D16)
    insert_attempt(db_conn, ids["MSFT"], D16, "failed", run_id=RUN.run_id)
    rerun = RunContext(RUN.dag_id, "manual__2025-01-16_again")
    insert_bar(db_conn, ids["MSFT"], D16)
    insert_attempt(db_conn, ids["MSFT"], D16, "completed", run_id=rerun.run_id, records=1)
    db_conn.commit()

    outlet_events = OutletEventAccessors()
    first = assets.emit_events(
        outlet_events, assets.run_completions(db_conn, RUN, assets.daily_sessions("2025-01-16")), RUN
    )
    second = assets.emit_events(
        outlet_events, assets.run_completions(db_conn, rerun, assets.daily_sessions("2025-01-16")), rerun
    )

    assert first == []  # the first run only failed there: it added nothing
    assert second == ["market_data/NASDAQ/1day"]
    extra = alias_events(outlet_events)["market_data/NASDAQ/1day"]
    assert (extra["symbols"], extra["stored"], extra["no_data"], extra["run_id"]) == (2, 2, 0, rerun.run_id)


def test_sessions_without_data_at_ib_count_as_complete(ids, db_conn):
    # SPY (ARCA's only symbol) has no data on the 14th; GYG's data starts on the 15th.
    insert_attempt(db_conn, ids["SPY"], D14, "no_data", run_id=RUN.run_id, error_code=162)
    insert_bar(db_conn, ids["BHP"], D13)
    insert_bar(db_conn, ids["BHP"], D14)
    insert_bar(db_conn, ids["BHP"], D15)
    insert_bar(db_conn, ids["GYG"], D15)
    insert_attempt(db_conn, ids["GYG"], D15, "completed", run_id=RUN.run_id, first_day=D13, records=1)
    db_conn.commit()

    completions = {
        item.name: item
        for item in assets.run_completions(db_conn, RUN, assets.backfill_sessions("2025-01-13", "2025-01-15"))
    }

    arca = completions["market_data/ARCA/1day"]
    assert (arca.complete, arca.symbols, arca.stored, arca.no_data) == (False, 1, 0, 0), (
        "SPY has no bar on the 13th and 15th: not collected"
    )
    asx = completions["market_data/ASX/1day"]
    assert asx.sessions == (D13, D14, D15)
    assert (asx.complete, asx.symbols, asx.stored, asx.no_data) == (True, 2, 1, 1)


def test_a_run_that_only_skipped_emits_nothing(ids, db_conn):
    insert_bar(db_conn, ids["AAPL"], D16)
    insert_bar(db_conn, ids["MSFT"], D16)
    for symbol in ("AAPL", "MSFT"):
        insert_attempt(db_conn, ids[symbol], D16, "skipped", run_id=RUN.run_id)
    db_conn.commit()

    assert assets.run_completions(db_conn, RUN, assets.daily_sessions("2025-01-16")) == []


def test_an_exchange_closed_on_the_trading_date_gets_no_event(ids, db_conn):
    # MLK day: ASX trades, NASDAQ does not; a NASDAQ attempt of the run (its lookback) is no session.
    insert_attempt(db_conn, ids["AAPL"], D16, "completed", run_id=RUN.run_id, records=1)
    insert_bar(db_conn, ids["AAPL"], D16)
    db_conn.commit()

    completions = assets.run_completions(db_conn, RUN, assets.daily_sessions("2025-01-20"))
    outlet_events = OutletEventAccessors()
    assert [(item.name, item.sessions) for item in completions] == [("market_data/NASDAQ/1day", ())]
    assert assets.emit_events(outlet_events, completions, RUN) == []


def row(symbol: str, exchange: str, priority: int) -> SymbolRow:
    return SymbolRow(0, symbol, "SMART", exchange, "USD", "STK", 1, priority, True)


def test_intraday_assets_expect_the_symbols_the_timeframe_policy_gives_them(monkeypatch):
    active = [row("AAPL", "NASDAQ", 1), row("QQQ", "NASDAQ", 2), row("SPY", "ARCA", 1)]
    monkeypatch.setenv("IBKR_INTRADAY_MAX_PRIORITY", "1")
    monkeypatch.setenv("IBKR_INTRADAY_TIMEFRAMES", "5min")
    assert assets.expected_symbols(active, "NASDAQ", "1day") == ["AAPL", "QQQ"]
    assert assets.expected_symbols(active, "NASDAQ", "5min") == ["AAPL"]
    assert assets.expected_symbols(active, "NASDAQ", "1hour") == []


def test_asset_names_are_checked():
    assert asset_name(" nasdaq ", "1DAY") == "market_data/NASDAQ/1day"
    assert market_data_asset("ASX", "5min") == Asset(name="market_data/ASX/5min", uri="market_data/ASX/5min")
    with pytest.raises(UnknownExchangeError, match="NASDQ"):
        asset_name("NASDQ", "1day")
    with pytest.raises(UnknownTimeframeError, match="2min"):
        asset_name("ASX", "2min")


def registered_events(run_id: str) -> dict[str, dict]:
    """Return the asset events Airflow's metadata database holds for run ``run_id``, by asset name."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_run_id == run_id)
        ).all()
    return {name: extra for name, extra in rows}


def test_the_summary_tasks_of_both_dags_register_their_events(
    daily_dag, backfill_dag, small_universe, market_db, ibkr_connection
):
    daily = daily_dag.test(run_conf={"date": "2025-01-15", "lookback_sessions": 1})
    assert daily.state == "success"
    assert sorted(registered_events(daily.run_id)) == [
        "market_data/ARCA/1day",
        "market_data/ASX/1day",
        "market_data/NASDAQ/1day",
        "market_data/NYSE/1day",
    ]
    assert registered_events(daily.run_id)["market_data/ASX/1day"]["symbols"] == 3  # BHP, CBA, GGP

    backfill = backfill_dag.test(
        run_conf={"start_date": "2025-01-16", "end_date": "2025-01-17", "exchanges": ["ASX"]}
    )
    assert backfill.state == "success"
    events = registered_events(backfill.run_id)
    assert sorted(events) == ["market_data/ASX/1day"]
    assert events["market_data/ASX/1day"]["sessions"] == ["2025-01-16", "2025-01-17"]


def test_the_example_consumer_parses_and_schedules_on_nasdaqs_daily_asset():
    from airflow.dag_processing.dagbag import DagBag

    from ibkr_market_data_dev.local_env import REPO_ROOT

    bag = DagBag(dag_folder=str(REPO_ROOT / "docs" / "examples" / "nasdaq_consumer_dag.py"))
    assert bag.import_errors == {}
    dag = bag.dags["nasdaq_daily_consumer"]
    assert list(dag.timetable.asset_condition.objects) == [market_data_asset("NASDAQ", "1day")]
