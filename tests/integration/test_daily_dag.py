"""The daily DAG run with dag.test() against real PostgreSQL and the TWS simulator."""

import datetime as dt

import psycopg
import pytest

from tests.integration.conftest import SMALL_UNIVERSE

ASX = {"BHP", "CBA", "GGP"}
US = set(SMALL_UNIVERSE) - ASX
MLK_DAY = dt.date(2025, 1, 20)  # US markets closed, ASX open


def stored_bars(url, day):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT s.symbol, md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count
            FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            WHERE md.timeframe = '1day' AND md.timestamp = %s
            """,
            (dt.datetime.combine(day, dt.time()),),
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def latest_statuses(url, run_id):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT DISTINCT ON (s.symbol) s.symbol, cl.status, cl.error_message, cl.error_code, cl.try_number
            FROM collection_logs cl JOIN symbols s ON s.id = cl.symbol_id
            WHERE cl.run_id = %s ORDER BY s.symbol, cl.try_number DESC, cl.id DESC
            """,
            (run_id,),
        ).fetchall()
    return {symbol: (status, message, code, try_number) for symbol, status, message, code, try_number in rows}


def expected_bar(simulator, symbol, day):
    bar = simulator.model.daily_bar(symbol, day)
    return (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap, bar.bar_count)


def test_daily_run_stores_the_simulators_bars(daily_dag, small_universe, market_db, ibkr_connection):
    day = dt.date(2025, 1, 15)
    dag_run = daily_dag.test(run_conf={"date": day.isoformat()})
    assert dag_run.state == "success"

    assert stored_bars(market_db, day) == {s: expected_bar(ibkr_connection, s, day) for s in SMALL_UNIVERSE}
    statuses = latest_statuses(market_db, dag_run.run_id)
    assert {symbol: status[0] for symbol, status in statuses.items()} == dict.fromkeys(
        SMALL_UNIVERSE, "completed"
    )
    # Values that break naive schemas survive exactly.
    assert stored_bars(market_db, day)["BRK A"][1] > 500_000
    assert stored_bars(market_db, day)["GGP"][2] < 0.01
    assert stored_bars(market_db, day)["SQQQ"][4] > 2**31
    assert ibkr_connection.violations() == []

    # Each symbol's request covered its last five sessions (the lookback), one bar per session.
    with psycopg.connect(market_db) as conn:
        per_symbol = dict(
            conn.execute(
                "SELECT s.symbol, COUNT(*) FROM market_data md"
                " JOIN symbols s ON s.id = md.symbol_id GROUP BY 1"
            ).fetchall()
        )
    assert per_symbol == dict.fromkeys(SMALL_UNIVERSE, 5)
    assert len(ibkr_connection.request_log.historical()) == len(SMALL_UNIVERSE)

    # A rerun of the date requests nothing and duplicates nothing.
    requests_before = len(ibkr_connection.request_log.historical())
    rerun = daily_dag.test(run_conf={"date": day.isoformat()})
    assert rerun.state == "success"
    assert len(ibkr_connection.request_log.historical()) == requests_before
    assert {s[0] for s in latest_statuses(market_db, rerun.run_id).values()} == {"skipped"}
    with psycopg.connect(market_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM market_data").fetchone()[0] == 5 * len(SMALL_UNIVERSE)


def test_exchange_holiday_skips_its_symbols_without_requests(
    daily_dag, small_universe, market_db, ibkr_connection
):
    # A lookback of one session is the date alone: the US symbols have nothing to heal.
    dag_run = daily_dag.test(run_conf={"date": MLK_DAY.isoformat(), "lookback_sessions": 1})
    assert dag_run.state == "success"
    statuses = latest_statuses(market_db, dag_run.run_id)
    assert {s for s, v in statuses.items() if v[0] == "completed"} == ASX
    for symbol in US:
        assert statuses[symbol][0] == "skipped"
        assert statuses[symbol][1].startswith("not a trading day")
    assert {r.symbol for r in ibkr_connection.request_log.historical()} == ASX
    assert set(stored_bars(market_db, MLK_DAY)) == ASX


def test_the_next_daily_run_heals_a_lost_date_and_records_a_changed_bar(
    daily_dag, small_universe, market_db, ibkr_connection
):
    """A date lost to a down scheduler comes back with the next run; a late correction is a revision."""
    import dataclasses

    from ibkr_market_data import calendars, repository
    from ibkr_market_data_dev.simulated_ib import stored_bar

    day = dt.date(2025, 1, 15)
    week = calendars.sessions_between("NASDAQ", dt.date(2025, 1, 8), day)  # 8, 10, 13, 14, 15
    correct = stored_bar(ibkr_connection.model.daily_bar("AAPL", week[2]))
    outdated = dataclasses.replace(correct, close=correct.low, volume=correct.volume + 100)
    with psycopg.connect(market_db) as conn:
        [aapl] = repository.select_symbols(conn, symbols=["AAPL"])
        # Stored: 8, 10 and an outdated 13; 14 was never collected (its run did not happen).
        before = [stored_bar(ibkr_connection.model.daily_bar("AAPL", d)) for d in week[:2]]
        repository.upsert_bars(conn, aapl.id, "1day", [*before, outdated])
        conn.commit()

    dag_run = daily_dag.test(run_conf={"date": day.isoformat(), "symbols": ["AAPL"]})
    assert dag_run.state == "success"

    [request] = ibkr_connection.request_log.historical()
    assert (request.duration, request.end_date_time) == ("8 D", "20250115 23:59:59 America/New_York")
    with psycopg.connect(market_db) as conn:
        stored = dict(
            conn.execute(
                "SELECT timestamp::date, close FROM market_data WHERE symbol_id = %s", (aapl.id,)
            ).fetchall()
        )
        revisions = conn.execute(
            "SELECT timestamp::date, old_close, new_close, run_id FROM bar_revisions"
        ).fetchall()
    expected = {d: stored_bar(ibkr_connection.model.daily_bar("AAPL", d)).close for d in week}
    assert stored == expected
    assert revisions == [(week[2], outdated.close, correct.close, dag_run.run_id)]

    # The window is whole now: a rerun sends nothing.
    rerun = daily_dag.test(run_conf={"date": day.isoformat(), "symbols": ["AAPL"]})
    assert rerun.state == "success"
    assert len(ibkr_connection.request_log.historical()) == 1


def test_sessions_ib_has_no_bar_for_are_recorded_as_no_data(
    daily_dag, small_universe, market_db, ibkr_connection
):
    ibkr_connection.faults.set("MSFT", no_data=True)
    day = dt.date(2025, 1, 15)
    dag_run = daily_dag.test(run_conf={"date": day.isoformat(), "symbols": ["MSFT"], "lookback_sessions": 2})
    assert dag_run.state == "success"
    assert latest_statuses(market_db, dag_run.run_id)["MSFT"][0] == "no_data"
    with psycopg.connect(market_db) as conn:
        recorded = conn.execute("SELECT session, reason FROM no_data_sessions ORDER BY session").fetchall()
    assert recorded == [(dt.date(2025, 1, 14), "no data from IB"), (day, "no data from IB")]


def test_permanent_ib_error_fails_only_that_symbol(daily_dag, small_universe, market_db, ibkr_connection):
    ibkr_connection.faults.set("AAPL", no_permission=True)
    ibkr_connection.faults.set("MSFT", no_data=True)
    ibkr_connection.faults.set("SPY", corrupt_bars=True)
    day = dt.date(2025, 1, 16)
    dag_run = daily_dag.test(run_conf={"date": day.isoformat()})
    assert dag_run.state == "failed"

    statuses = latest_statuses(market_db, dag_run.run_id)
    assert statuses["AAPL"][0] == "failed" and statuses["AAPL"][2] == 354
    assert statuses["AAPL"][3] == 1, "a permanent error must not be retried"
    assert statuses["MSFT"][0] == "no_data" and statuses["MSFT"][2] == 162
    assert statuses["SPY"][0] == "failed" and "below low" in statuses["SPY"][1]
    assert {s for s, v in statuses.items() if v[0] == "completed"} == set(SMALL_UNIVERSE) - {
        "AAPL",
        "MSFT",
        "SPY",
    }
    assert set(stored_bars(market_db, day)) == set(SMALL_UNIVERSE) - {"AAPL", "MSFT", "SPY"}
    assert len(ibkr_connection.request_log.historical(symbol="AAPL")) == 1


def test_dry_run_sends_nothing_and_writes_nothing(daily_dag, small_universe, market_db, ibkr_connection):
    dag_run = daily_dag.test(run_conf={"date": "2025-01-15", "dry_run": True})
    assert dag_run.state == "success"
    assert ibkr_connection.request_log.historical() == []
    with psycopg.connect(market_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM market_data").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM collection_logs").fetchone()[0] == 0


def test_malformed_date_is_refused_at_trigger_naming_the_param(daily_dag, small_universe, ibkr_connection):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="param date: '2025-13-01' is not a 'date'"):
        daily_dag.test(run_conf={"date": "2025-13-01"})
    assert ibkr_connection.request_log.historical() == []


@pytest.mark.parametrize(
    ("conf", "failed_task"),
    [
        ({"date": "2099-01-05"}, "resolve_date"),
        ({"date": "2025-01-18"}, "resolve_date"),  # a Saturday
        ({"date": "2025-01-15", "symbols": ["AAPL", "NOPE", "ZZZZ"]}, "plan"),
    ],
)
def test_bad_params_fail_the_run_before_any_request(
    daily_dag, small_universe, market_db, ibkr_connection, conf, failed_task, capsys
):
    dag_run = daily_dag.test(run_conf=conf)
    assert dag_run.state == "failed"
    tries = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    assert daily_dag.get_task(failed_task).retries >= 1
    assert tries[failed_task] == ("failed", 1), "a bad param fails at once, whatever the task's retries"
    # The summary names the task that failed, at once, instead of crashing on its missing output.
    assert tries["summary"] == ("failed", 1)
    task_logs = capsys.readouterr().out
    assert f"because task '{failed_task}' failed" in task_logs
    assert "TypeError" not in task_logs
    assert ibkr_connection.request_log.historical() == []
    with psycopg.connect(market_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM market_data").fetchone()[0] == 0


def test_a_symbol_on_an_exchange_without_a_calendar_is_skipped_and_the_others_collected(
    daily_dag, small_universe, market_db, ibkr_connection
):
    from ibkr_market_data import repository

    with psycopg.connect(market_db) as conn:
        [bhp] = repository.select_symbols(conn, symbols=["BHP"])
        repository.mark_resolved(conn, bhp.id, bhp.con_id, "CHIXAU")  # IB names another venue
    day = dt.date(2025, 1, 15)
    dag_run = daily_dag.test(run_conf={"date": day.isoformat()})
    assert dag_run.state == "success"

    statuses = latest_statuses(market_db, dag_run.run_id)
    assert statuses["BHP"][0] == "skipped"
    assert statuses["BHP"][1].startswith("No trading calendar for exchange 'CHIXAU'")
    assert {s for s, v in statuses.items() if v[0] == "completed"} == set(SMALL_UNIVERSE) - {"BHP"}
    assert set(stored_bars(market_db, day)) == set(SMALL_UNIVERSE) - {"BHP"}
    assert "BHP" not in {r.symbol for r in ibkr_connection.request_log.historical()}
