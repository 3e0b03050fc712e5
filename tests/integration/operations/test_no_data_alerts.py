"""A run whose share of IB's no-data answers is unusual alerts, once, on every channel; a normal one does not.

Real PostgreSQL, real SMTP (aiosmtpd) and HTTP receivers on loopback, and a daily run through
dag.test() against the simulator. See docs/operations.md#no-data.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from ibkr_market_data import alerts, no_data_alerts, run_metrics
from tests.integration.conftest import SMALL_UNIVERSE
from tests.integration.operations.conftest import DAILY, clear_operations_tables, insert_attempt

DAY = dt.date(2025, 1, 15)
AS_OF = dt.datetime(2025, 1, 17, 12, 0, tzinfo=dt.UTC)
NOTHING_DUE = dt.timedelta(days=30)


def add_symbols(conn: psycopg.Connection, count: int) -> list[int]:
    """Insert ``count`` active NASDAQ symbols and return their ids."""
    return [
        conn.execute(
            "INSERT INTO symbols (symbol, exchange, primary_exchange, currency, con_id, active) "
            "VALUES (%s, 'SMART', 'NASDAQ', 'USD', %s, TRUE) RETURNING id",
            (f"S{number:03d}", 1000 + number),
        ).fetchone()[0]
        for number in range(count)
    ]


def record_run(conn: psycopg.Connection, ids: list[int], no_data: int, run_id: str, day: dt.date) -> None:
    """Record a run over ``ids`` whose first ``no_data`` symbols IB answered with 162, and its metrics."""
    for index, symbol_id in enumerate(ids):
        if index < no_data:
            insert_attempt(conn, symbol_id, day, "no_data", run_id=run_id, error_code=162)
        else:
            insert_attempt(conn, symbol_id, day, "completed", run_id=run_id, records=1)
    conn.commit()
    run_metrics.record(conn, DAILY, run_id)


def history(conn: psycopg.Connection, ids: list[int], no_data: int, runs: int = 5) -> None:
    """Record ``runs`` earlier runs, each with ``no_data`` no-data answers."""
    for number in range(runs):
        day = dt.date(2025, 1, 6) + dt.timedelta(days=number)
        record_run(conn, ids, no_data, f"scheduled__{day.isoformat()}", day)


def texts(sink) -> list[str]:
    return [payload["text"] for _, payload in sink.posts]


@pytest.fixture
def symbols(db_conn: psycopg.Connection) -> list[int]:
    clear_operations_tables(db_conn)
    ids = add_symbols(db_conn, 25)
    db_conn.commit()
    return ids


def test_a_run_answered_no_data_for_most_targets_alerts_once_on_every_channel(
    symbols, db_conn, smtp_sink, http_sink
):
    history(db_conn, symbols, no_data=1)
    record_run(db_conn, symbols, 20, "manual__farm_silent", DAY)

    found = no_data_alerts.check_run(db_conn, DAILY, "manual__farm_silent")

    assert [(item.exchange, item.no_data, item.requested) for item in found] == [
        ("ALL", 20, 25),
        ("NASDAQ", 20, 25),
    ]
    subject = f"{DAILY} run manual__farm_silent: IB answered no data for 20 of 25 targets"
    assert [message["Subject"] for message in smtp_sink.messages] == [subject]
    [text] = texts(http_sink)
    assert text.startswith(f"*{subject}*\n")
    assert "- all exchanges: 20 of 25 requested targets answered no data (80%; usually 4%)" in text
    delivered = db_conn.execute(
        "SELECT channel FROM alert_deliveries WHERE alert_key = %s AND delivered_at IS NOT NULL "
        "ORDER BY channel",
        (no_data_alerts.alert_key(DAILY, "manual__farm_silent"),),
    ).fetchall()
    assert delivered == [("email",), ("webhook",)]

    # The summary's retry, or a rerun of the summary: nothing is sent again.
    assert no_data_alerts.check_run(db_conn, DAILY, "manual__farm_silent") == found
    assert len(smtp_sink.messages) == 1 and len(http_sink.posts) == 1


def test_a_normal_run_does_not_alert(symbols, db_conn, smtp_sink, http_sink):
    history(db_conn, symbols, no_data=1)
    record_run(db_conn, symbols, 2, "manual__normal", DAY)  # 8 %, under the 20 % threshold

    assert no_data_alerts.check_run(db_conn, DAILY, "manual__normal") == []
    assert smtp_sink.messages == [] and http_sink.posts == []
    assert db_conn.execute("SELECT COUNT(*) FROM alert_deliveries").fetchone() == (0,)


def test_a_small_run_does_not_alert_on_one_illiquid_symbol(db_conn, http_sink):
    clear_operations_tables(db_conn)
    ids = add_symbols(db_conn, 3)
    record_run(db_conn, ids, 1, "manual__three", DAY)  # 33 % of 3 targets: under the 20 targets minimum

    assert no_data_alerts.check_run(db_conn, DAILY, "manual__three") == []
    assert http_sink.posts == []


def test_a_share_usual_for_this_universe_is_not_news_and_twice_it_is(symbols, db_conn, http_sink):
    history(db_conn, symbols, no_data=8)  # 32 % each run: an illiquid universe
    record_run(db_conn, symbols, 10, "manual__as_usual", DAY)  # 40 %: above 20 %, under 2 x 32 %
    assert no_data_alerts.check_run(db_conn, DAILY, "manual__as_usual") == []
    assert http_sink.posts == []

    record_run(db_conn, symbols, 17, "manual__twice", DAY + dt.timedelta(days=1))  # 68 %
    [whole, _] = no_data_alerts.check_run(db_conn, DAILY, "manual__twice")
    assert whole.usual == pytest.approx(0.32)
    assert "(68%; usually 32%)" in texts(http_sink)[0]


def test_a_channel_that_failed_is_retried_by_the_watchdog_without_repeating_the_other(
    symbols, db_conn, smtp_sink, http_sink
):
    record_run(db_conn, symbols, 25, "manual__all_empty", DAY)
    http_sink.status = 500
    no_data_alerts.check_run(db_conn, DAILY, "manual__all_empty")
    assert len(smtp_sink.messages) == 1 and len(http_sink.posts) == 1

    # The summary tried again: the email is not repeated, the refused webhook is left to the watchdog.
    no_data_alerts.check_run(db_conn, DAILY, "manual__all_empty")
    assert len(smtp_sink.messages) == 1 and len(http_sink.posts) == 1

    http_sink.status = 200
    alerts.run_watchdog(db_conn, AS_OF, NOTHING_DUE)
    assert len(smtp_sink.messages) == 1
    assert len(http_sink.posts) == 2 and texts(http_sink)[1] == texts(http_sink)[0]


def test_a_daily_run_whose_answers_are_mostly_no_data_alerts_and_stays_green(
    daily_dag, small_universe, market_db, ibkr_connection, http_sink, monkeypatch
):
    """The summary task sends it: 6 of the 8 symbols answered 162 (a farm answering empty)."""
    monkeypatch.setenv("IBKR_NO_DATA_ALERT_MIN_TARGETS", "5")
    with psycopg.connect(market_db) as conn:
        clear_operations_tables(conn)
    silent = sorted(SMALL_UNIVERSE)[:6]
    for symbol in silent:
        ibkr_connection.faults.set(symbol, no_data=True)

    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "lookback_sessions": 1})

    assert dag_run.state == "success"
    [text] = texts(http_sink)
    assert text.startswith(f"*{DAILY} run {dag_run.run_id}: IB answered no data for 6 of 8 targets*")
    assert "- all exchanges: 6 of 8 requested targets answered no data (75%; no earlier runs)" in text


def test_a_daily_run_with_one_no_data_answer_does_not_alert(
    daily_dag, small_universe, market_db, ibkr_connection, http_sink, monkeypatch
):
    monkeypatch.setenv("IBKR_NO_DATA_ALERT_MIN_TARGETS", "5")
    with psycopg.connect(market_db) as conn:
        clear_operations_tables(conn)
    ibkr_connection.faults.set("MSFT", no_data=True)

    dag_run = daily_dag.test(run_conf={"date": DAY.isoformat(), "lookback_sessions": 1})

    assert dag_run.state == "success"
    assert http_sink.posts == []
