"""The backfill DAG run with dag.test() against real PostgreSQL and the TWS simulator (clock 2025-06-30)."""

import dataclasses
import datetime as dt
from decimal import Decimal

import psycopg
import pytest

from ibkr_market_data import calendars, repository
from ibkr_market_data.bars import Bar
from ibkr_market_data.repository import RunContext, UpsertResult
from ibkr_market_data_dev.simulated_ib import stored_bar

DAG_ID = "backfill_market_data"
SEEDED = RunContext("test", "seeded")


@pytest.fixture
def gyg(market_db, ibkr_connection):
    """GYG (ASX, listed 2025-06-16 in the simulator) loaded and resolved."""
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.symbols import load_symbols
    from ibkr_market_data.universe import load_universe

    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        report = load_symbols(conn, hook, [entry for entry in load_universe() if entry.symbol == "GYG"])
    assert report.resolved == ["GYG"]


def d(text):
    return dt.date.fromisoformat(text)


def sim_bar(simulator, symbol, day):
    return stored_bar(simulator.model.daily_bar(symbol, day))


def store(url, symbol, bars):
    with psycopg.connect(url) as conn:
        [row] = repository.select_symbols(conn, symbols=[symbol])
        repository.upsert_bars(conn, row.id, "1day", bars)
        conn.commit()


def stored_bars(url, symbol):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT md.timestamp::date, md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count
            FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            WHERE s.symbol = %s AND md.timeframe = '1day' ORDER BY md.timestamp
            """,
            (symbol,),
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def expected_bars(simulator, symbol, start, end):
    return {
        bar.date: (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap, bar.bar_count)
        for bar in simulator.model.daily_bars(symbol, start, end)
    }


def latest_statuses(url, run_id):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT DISTINCT ON (s.symbol) s.symbol, cl.status, cl.error_message
            FROM collection_logs cl JOIN symbols s ON s.id = cl.symbol_id
            WHERE cl.run_id = %s ORDER BY s.symbol, cl.id DESC
            """,
            (run_id,),
        ).fetchall()
    return {symbol: (status, message) for symbol, status, message in rows}


def count(url, table):
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608


def run(dag, start, end, **conf):
    return dag.test(run_conf={"start_date": start, "end_date": end, **conf})


def test_partially_filled_symbols_get_one_request_per_gap_and_a_rerun_sends_nothing(
    backfill_dag, small_universe, market_db, ibkr_connection
):
    start, end = d("2025-01-13"), d("2025-01-24")  # MLK day 2025-01-20: ASX only
    sessions = {exchange: calendars.sessions_between(exchange, start, end) for exchange in ("ASX", "NASDAQ")}
    store(
        market_db,
        "AAPL",
        [sim_bar(ibkr_connection, "AAPL", day) for day in sessions["NASDAQ"] if day != d("2025-01-15")],
    )
    store(market_db, "BHP", [sim_bar(ibkr_connection, "BHP", day) for day in sessions["ASX"][2:-1]])
    store(market_db, "CBA", [sim_bar(ibkr_connection, "CBA", day) for day in sessions["ASX"]])

    dag_run = run(backfill_dag, start.isoformat(), end.isoformat(), symbols=["AAPL", "BHP", "MSFT", "CBA"])
    assert dag_run.state == "success"

    requests = {r.symbol: (r.duration, r.end_date_time) for r in ibkr_connection.request_log.historical()}
    assert requests == {
        "AAPL": ("1 D", "20250115 23:59:59 America/New_York"),  # the gap in the middle
        "BHP": ("12 D", "20250124 23:59:59 Australia/Sydney"),  # gaps at both edges, one request
        "MSFT": ("12 D", "20250124 23:59:59 America/New_York"),  # nothing stored
    }
    assert len(ibkr_connection.request_log.historical()) == 3
    for symbol in ("AAPL", "BHP", "MSFT", "CBA"):
        assert stored_bars(market_db, symbol) == expected_bars(ibkr_connection, symbol, start, end), symbol
    assert d("2025-01-20") in stored_bars(market_db, "BHP") and d("2025-01-20") not in stored_bars(
        market_db, "MSFT"
    )
    statuses = latest_statuses(market_db, dag_run.run_id)
    assert {symbol: status for symbol, (status, _) in statuses.items()} == {
        "AAPL": "completed",
        "BHP": "completed",
        "MSFT": "completed",
        "CBA": "skipped",
    }
    assert statuses["CBA"][1] == "no gaps in 2025-01-13..2025-01-24"
    assert count(market_db, "bar_revisions") == 0
    assert ibkr_connection.violations() == []

    rerun = run(backfill_dag, start.isoformat(), end.isoformat(), symbols=["AAPL", "BHP", "MSFT", "CBA"])
    assert rerun.state == "success"
    assert len(ibkr_connection.request_log.historical()) == 3
    assert {status for status, _ in latest_statuses(market_db, rerun.run_id).values()} == {"skipped"}


def test_a_symbol_listed_mid_range_records_its_first_date_and_is_never_asked_again(
    backfill_dag, gyg, market_db, ibkr_connection
):
    listing = d("2025-06-16")
    dag_run = run(backfill_dag, "2025-06-02", "2025-06-27", symbols=["GYG"])
    assert dag_run.state == "success"

    assert list(stored_bars(market_db, "GYG")) == calendars.sessions_between("ASX", listing, d("2025-06-27"))
    with psycopg.connect(market_db) as conn:
        no_data = conn.execute("SELECT session, reason FROM no_data_sessions ORDER BY session").fetchall()
        first_available = conn.execute(
            "SELECT first_available_date FROM symbols WHERE symbol = 'GYG'"
        ).fetchone()[0]
    assert first_available == listing
    assert [session for session, _ in no_data] == calendars.sessions_between(
        "ASX", d("2025-06-02"), d("2025-06-13")
    )
    assert {reason for _, reason in no_data} == {
        "no data from IB: before its first available date 2025-06-16 (IB head timestamp)"
    }
    assert len(ibkr_connection.request_log.historical()) == 1
    assert len(ibkr_connection.request_log.head_timestamps()) == 1

    ibkr_connection.request_log.clear()
    for start, end in (("2025-06-02", "2025-06-27"), ("2025-03-03", "2025-03-28")):
        again = run(backfill_dag, start, end, symbols=["GYG"])
        assert again.state == "success"
        assert latest_statuses(market_db, again.run_id)["GYG"] == ("skipped", f"no gaps in {start}..{end}")
    assert len(ibkr_connection.request_log) == 0, "no request of any kind once the listing date is known"


def test_one_empty_answer_is_recorded_and_asked_again_so_ib_s_passing_trouble_loses_nothing(
    backfill_dag, small_universe, market_db, ibkr_connection
):
    week = calendars.sessions_between("NASDAQ", d("2025-02-03"), d("2025-02-07"))
    ibkr_connection.faults.set("MSFT", no_data=True)
    dag_run = run(backfill_dag, "2025-02-03", "2025-02-07", symbols=["MSFT"])
    assert dag_run.state == "success", "no data is an outcome, not a failure"
    assert latest_statuses(market_db, dag_run.run_id)["MSFT"][0] == "no_data"
    with psycopg.connect(market_db) as conn:
        no_data = conn.execute("SELECT session, reason FROM no_data_sessions ORDER BY session").fetchall()
    assert no_data == [(day, "no data from IB") for day in week]

    # IB has the bars after all (a transient HMDS answer): the next backfill asks again and stores them.
    ibkr_connection.faults.clear("MSFT")
    rerun = run(backfill_dag, "2025-02-03", "2025-02-07", symbols=["MSFT"])
    assert rerun.state == "success"
    assert list(stored_bars(market_db, "MSFT")) == week
    assert count(market_db, "no_data_sessions") == 0


def test_sessions_empty_on_two_different_days_are_settled_until_a_recheck(
    backfill_dag, small_universe, market_db, ibkr_connection
):
    week = calendars.sessions_between("NASDAQ", d("2025-02-03"), d("2025-02-07"))
    ibkr_connection.faults.set("MSFT", no_data=True)
    assert run(backfill_dag, "2025-02-03", "2025-02-07", symbols=["MSFT"]).state == "success"
    with psycopg.connect(market_db) as conn:
        # That answer came yesterday.
        conn.execute(
            "UPDATE no_data_sessions"
            " SET first_seen = first_seen - INTERVAL '1 day', last_seen = last_seen - INTERVAL '1 day'"
        )
    requests_before = len(ibkr_connection.request_log.historical())
    assert run(backfill_dag, "2025-02-03", "2025-02-07", symbols=["MSFT"]).state == "success"
    assert len(ibkr_connection.request_log.historical()) == requests_before + 1, "seen once: asked again"

    # Empty on two different days: settled, not asked again, even once IB would answer.
    ibkr_connection.faults.clear("MSFT")
    settled = run(backfill_dag, "2025-02-03", "2025-02-07", symbols=["MSFT"])
    assert settled.state == "success"
    assert len(ibkr_connection.request_log.historical()) == requests_before + 1
    assert latest_statuses(market_db, settled.run_id)["MSFT"][0] == "skipped"

    # An operator's recheck asks again; the bars that come back are stored, the sessions leave no_data.
    recheck = run(backfill_dag, "2025-02-03", "2025-02-07", symbols=["MSFT"], recheck_no_data=True)
    assert recheck.state == "success"
    assert list(stored_bars(market_db, "MSFT")) == week
    assert count(market_db, "no_data_sessions") == 0


def test_a_failed_head_timestamp_records_nothing_so_the_next_backfill_asks_again(
    small_universe, market_db, ibkr_connection
):
    from ibkr_market_data.errors import IbkrPacingError
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.repository import RunContext
    from ibkr_market_data.tasks.backfill import fill_symbol_gaps

    class HeadTimestampRefused:
        """The real hook, except that IB refuses its head timestamp request.

        The simulator's faults cannot tell a head timestamp from the historical request before it.
        """

        def __init__(self, hook):
            self.hook = hook

        def __getattr__(self, name):
            return getattr(self.hook, name)

        def head_timestamp(self, spec):
            self.hook.requests_sent += 1
            raise IbkrPacingError("Historical data request pacing violation", 162)

    ibkr_connection.faults.set("MSFT", no_data=True)
    now = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    run_context = RunContext(DAG_ID, "manual__head_refused", 1)
    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        [msft] = repository.select_symbols(conn, symbols=["MSFT"])
        outcome = fill_symbol_gaps(
            conn, HeadTimestampRefused(hook), msft, d("2025-02-03"), d("2025-02-07"), run_context, now
        )
    assert outcome.no_data_sessions == 0
    assert count(market_db, "no_data_sessions") == 0, "nothing recorded without IB's head timestamp"
    assert len(ibkr_connection.request_log.historical()) == 1


def test_a_changed_bar_inside_a_request_is_logged_as_a_revision_and_replaced(
    backfill_dag, small_universe, market_db, ibkr_connection
):
    week = calendars.sessions_between("NASDAQ", d("2025-01-13"), d("2025-01-17"))
    correct = sim_bar(ibkr_connection, "AAPL", d("2025-01-15"))
    outdated = dataclasses.replace(correct, close=correct.low, volume=correct.volume + 100)
    # Stored: the middle three sessions, one of them with values IB has since changed.
    store(
        market_db,
        "AAPL",
        [sim_bar(ibkr_connection, "AAPL", week[1]), outdated, sim_bar(ibkr_connection, "AAPL", week[3])],
    )

    dag_run = run(backfill_dag, "2025-01-13", "2025-01-17", symbols=["AAPL"])
    assert dag_run.state == "success"

    [request] = ibkr_connection.request_log.historical()
    assert (request.duration, request.end_date_time) == ("5 D", "20250117 23:59:59 America/New_York")
    assert stored_bars(market_db, "AAPL") == expected_bars(ibkr_connection, "AAPL", week[0], week[-1])
    with psycopg.connect(market_db) as conn:
        revisions = conn.execute(
            "SELECT timestamp, old_close, new_close, old_volume, new_volume, run_id FROM bar_revisions"
        ).fetchall()
        totals = repository.run_backfill_totals(conn, DAG_ID, dag_run.run_id)
    assert revisions == [
        (correct.timestamp, outdated.close, correct.close, outdated.volume, correct.volume, dag_run.run_id)
    ]
    assert totals == {"requests_sent": 1, "bars_collected": 5, "bars_revised": 1, "no_data_sessions": 0}


def test_dry_run_sends_nothing_and_writes_nothing(backfill_dag, small_universe, market_db, ibkr_connection):
    dag_run = run(backfill_dag, "2025-01-13", "2025-03-28", dry_run=True)
    assert dag_run.state == "success"
    assert len(ibkr_connection.request_log.historical()) == 0
    assert len(ibkr_connection.request_log.head_timestamps()) == 0
    for table in ("market_data", "collection_logs", "no_data_sessions", "bar_revisions"):
        assert count(market_db, table) == 0, table


@pytest.mark.parametrize(
    "conf",
    [
        {"start_date": "2025-03-10", "end_date": "2025-03-01"},
        {"start_date": "2025-03-01", "end_date": "2099-03-10"},
        {"start_date": "2025-03-01", "end_date": "2025-03-10", "symbols": ["AAPL", "NOPE"]},
    ],
    ids=["start-after-end", "future", "unknown-symbol"],
)
def test_bad_params_fail_validate_before_any_request(
    backfill_dag, small_universe, market_db, ibkr_connection, conf
):
    dag_run = backfill_dag.test(run_conf=conf)
    assert dag_run.state == "failed"
    tries = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    assert backfill_dag.get_task("validate").retries >= 1
    assert tries["validate"] == ("failed", 1), "a bad param fails at once, whatever the task's retries"
    assert tries["find_gaps"][0] == "upstream_failed"
    assert tries["summary"] == ("failed", 1)
    assert len(ibkr_connection.request_log.historical()) == 0
    assert count(market_db, "market_data") == 0


def test_a_symbol_on_an_exchange_without_a_calendar_is_skipped_and_the_others_filled(
    backfill_dag, small_universe, market_db, ibkr_connection
):
    with psycopg.connect(market_db) as conn:
        [bhp] = repository.select_symbols(conn, symbols=["BHP"])
        repository.mark_resolved(conn, bhp.id, bhp.con_id, "CHIXAU")  # IB names another venue
    dag_run = run(backfill_dag, "2025-01-13", "2025-01-17", symbols=["BHP", "CBA", "AAPL"])
    assert dag_run.state == "success"

    statuses = latest_statuses(market_db, dag_run.run_id)
    assert statuses["BHP"][0] == "skipped"
    assert statuses["BHP"][1].startswith("No trading calendar for exchange 'CHIXAU'")
    assert (statuses["CBA"][0], statuses["AAPL"][0]) == ("completed", "completed")
    assert {r.symbol for r in ibkr_connection.request_log.historical()} == {"CBA", "AAPL"}
    assert stored_bars(market_db, "BHP") == {}


def test_cli_dry_run_prints_the_gap_report_and_sends_nothing(
    small_universe, market_db, ibkr_connection, capsys
):
    from ibkr_market_data import cli

    store(market_db, "AAPL", [sim_bar(ibkr_connection, "AAPL", d("2025-01-14"))])
    code = cli.main(
        ["backfill", "--from", "2025-01-13", "--to", "2025-01-17", "--symbols", "AAPL,BHP", "--dry-run"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Gaps 2025-01-13..2025-01-17" in out
    assert "  AAPL (NASDAQ): 4 missing [2025-01-13, 2025-01-15..2025-01-17] -> 5 D ending 2025-01-17" in out
    assert "  BHP (ASX): 5 missing [2025-01-13..2025-01-17] -> 5 D ending 2025-01-17" in out
    assert len(ibkr_connection.request_log.historical()) == 0
    assert count(market_db, "market_data") == 1


def test_cli_refuses_bad_input_before_any_request(small_universe, market_db, ibkr_connection, capsys):
    from ibkr_market_data import cli

    ibkr_connection.request_log.clear()  # the fixture's contract-details requests
    code = cli.main(["backfill", "--from", "2025-01-17", "--to", "2025-01-13"])
    assert code == 2
    assert "'start_date' 2025-01-17 is after 'end_date' 2025-01-13" in capsys.readouterr().err
    assert len(ibkr_connection.request_log) == 0


def test_backfill_writes_copy_new_bars_compare_stored_ones_and_clear_no_data_sessions(market_db, db_conn):
    from ibkr_market_data.universe import load_universe

    repository.upsert_universe(db_conn, [entry for entry in load_universe() if entry.symbol == "AAPL"])
    [aapl] = repository.select_symbols(db_conn, symbols=["AAPL"], active_only=False)
    run_context = RunContext(DAG_ID, "manual")
    week = [dt.datetime(2025, 1, day) for day in (13, 14, 15, 16, 17)]
    bars = [
        Bar(ts, Decimal("10"), Decimal("12"), Decimal("9"), Decimal("11"), 1000, Decimal("10.5"), 10)
        for ts in week
    ]
    repository.record_no_data_sessions(
        db_conn, aapl.id, "1day", [d("2025-01-17")], "no data from IB", run_context
    )

    assert repository.store_backfilled_bars(db_conn, aapl.id, "1day", bars[:4], run_context) == UpsertResult(
        4, 0
    )
    changed = dataclasses.replace(bars[1], close=Decimal("11.5"))
    result = repository.store_backfilled_bars(
        db_conn, aapl.id, "1day", [bars[0], changed, *bars[2:]], run_context
    )
    db_conn.commit()

    assert (result.inserted, result.revised) == (1, 1)
    assert stored_bars(market_db, "AAPL")[d("2025-01-14")][3] == Decimal("11.5")
    revisions = db_conn.execute("SELECT timestamp, old_close, new_close FROM bar_revisions").fetchall()
    assert revisions == [(week[1], Decimal("11"), Decimal("11.5"))]
    assert count(market_db, "no_data_sessions") == 0, "a session with a bar is no longer 'no data'"
    assert repository.run_backfill_totals(db_conn, DAG_ID, "manual")["bars_revised"] == 1


def test_two_upserts_in_one_transaction_keep_each_symbols_bars_apart(market_db, db_conn):
    from ibkr_market_data.universe import load_universe

    repository.upsert_universe(
        db_conn, [entry for entry in load_universe() if entry.symbol in ("AAPL", "MSFT")]
    )
    rows = {row.symbol: row for row in repository.select_symbols(db_conn, active_only=False)}
    bar = Bar(
        dt.datetime(2025, 1, 13), Decimal("10"), Decimal("12"), Decimal("9"), Decimal("11"), 1000, None, 10
    )
    later = dataclasses.replace(bar, timestamp=dt.datetime(2025, 1, 14))

    assert repository.upsert_bars(db_conn, rows["AAPL"].id, "1day", [bar]) == UpsertResult(1, 0)
    assert repository.upsert_bars(db_conn, rows["MSFT"].id, "1day", [later]) == UpsertResult(1, 0)
    db_conn.commit()

    assert list(stored_bars(market_db, "AAPL")) == [d("2025-01-13")]
    assert list(stored_bars(market_db, "MSFT")) == [d("2025-01-14")]


def test_a_symbol_is_finished_only_when_every_window_is(small_universe, market_db, ibkr_connection):
    """One finished window must not hide another that is pending, or that was never sent."""
    from ibkr_market_data.backfill_plan import BackfillRange
    from ibkr_market_data.errors import PermanentError
    from ibkr_market_data.repository import RunContext
    from ibkr_market_data.tasks import backfill as tasks
    from ibkr_market_data_dev.simulated_ib import stored_bar

    request = BackfillRange(d("2025-01-13"), d("2025-01-24"), ("NASDAQ",), ("AAPL", "MSFT"))
    first_week = calendars.sessions_between("NASDAQ", d("2025-01-13"), d("2025-01-17"))
    run_context = RunContext(DAG_ID, "manual__windows", 1)
    with psycopg.connect(market_db) as conn:
        rows = {row.symbol: row for row in repository.select_symbols(conn, symbols=["AAPL", "MSFT"])}
        for symbol, second_window in (("AAPL", "pending"), ("MSFT", None)):
            row = rows[symbol]
            bars = [stored_bar(ibkr_connection.model.daily_bar(symbol, day)) for day in first_week]
            repository.upsert_bars(conn, row.id, "1day", bars)
            done = repository.start_attempt(
                conn,
                run_context,
                row.id,
                "1day",
                *(dt.datetime.combine(x, dt.time()) for x in first_week[::4]),
            )
            repository.finish_attempt(conn, done, "completed", records_collected=5)
            if second_window == "pending":  # its task died mid-request
                repository.start_attempt(
                    conn, run_context, row.id, "1day", dt.datetime(2025, 1, 21), dt.datetime(2025, 1, 24)
                )
            # MSFT: its task died before the second window was sent: no row at all.
        gaps = [{"symbol_id": rows[s].id, "symbol": s} for s in ("AAPL", "MSFT")]
        groups = [
            group.to_dict() for group in repository.save_plan(conn, run_context, [("AAPL…MSFT (2)", gaps)])
        ]
        conn.commit()

    with pytest.raises(PermanentError) as raised:
        tasks.summarize(request.to_dict(), groups, run_context)
    assert "2 symbols with gaps have no outcome: AAPL, MSFT" in str(raised.value)


def test_a_broken_bar_fails_its_symbol_but_the_good_bars_of_the_window_are_kept(
    backfill_dag, small_universe, market_db, ibkr_connection
):
    week = calendars.sessions_between("NASDAQ", d("2025-01-13"), d("2025-01-17"))
    ibkr_connection.faults.set("AAPL", corrupt_first_bar=1)
    dag_run = run(backfill_dag, "2025-01-13", "2025-01-17", symbols=["AAPL"])
    assert dag_run.state == "failed"

    assert list(stored_bars(market_db, "AAPL")) == week[1:], "the four good bars are stored"
    status, message = latest_statuses(market_db, dag_run.run_id)["AAPL"]
    assert status == "failed"
    assert message.startswith("4 good bars stored; 1 broken bars not stored: bar 2025-01-13")

    # The next backfill asks only for the broken session.
    ibkr_connection.request_log.clear()
    rerun = run(backfill_dag, "2025-01-13", "2025-01-17", symbols=["AAPL"])
    assert rerun.state == "success"
    [request] = ibkr_connection.request_log.historical()
    assert (request.duration, request.end_date_time) == ("1 D", "20250113 23:59:59 America/New_York")
    assert stored_bars(market_db, "AAPL") == expected_bars(ibkr_connection, "AAPL", week[0], week[-1])


def test_the_backfill_checks_the_quality_of_its_range(
    backfill_dag, small_universe, market_db, ibkr_connection
):
    """Two months of AAPL and MSFT: the newest bar of AAPL's answer is a spike, MSFT is clean."""
    ibkr_connection.faults.set("AAPL", spike=1)

    dag_run = run(backfill_dag, "2024-11-01", "2024-12-31", symbols=["AAPL", "MSFT"])

    assert dag_run.state == "failed", "a new error-severity finding fails the backfill too"
    with psycopg.connect(market_db) as conn:
        found = conn.execute(
            "SELECT s.symbol, q.timestamp::date, q.check_name, q.severity FROM data_quality_issues q "
            "JOIN symbols s ON s.id = q.symbol_id"
        ).fetchall()
    assert found == [("AAPL", d("2024-12-31"), "spike", "error")]
    assert stored_bars(market_db, "MSFT") == expected_bars(
        ibkr_connection, "MSFT", d("2024-11-01"), d("2024-12-31")
    )
