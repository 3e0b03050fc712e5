"""Splits, conId changes, delistings and the universe as the truth, through daily runs (dag.test()).

Real PostgreSQL, the real ib_insync client over the socket to the simulator, whose clock a test
moves past the day IB changes a symbol. Stored data is compared with the simulator's served model.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest

from ibkr_market_data import calendars, repository
from ibkr_market_data.bars import Bar
from ibkr_market_data.hooks.ibkr import IbkrHook
from ibkr_market_data.symbols import load_symbols
from ibkr_market_data.universe import load_universe
from ibkr_market_data_dev.simulated_ib import stored_bar
from tws_simulator.testing import SettableClock

#: Friday 2025-06-13 after the US close: every session up to it is served on the old basis.
BEFORE = dt.datetime(2025, 6, 13, 22, tzinfo=dt.UTC)
#: The Monday IB changes the symbol (a split, a new conId, a delisting), and its evening.
CHANGE_DAY = dt.date(2025, 6, 16)
AFTER = dt.datetime(2025, 6, 16, 22, tzinfo=dt.UTC)
NEXT_DAY = dt.date(2025, 6, 17)
NEXT_EVENING = dt.datetime(2025, 6, 17, 22, tzinfo=dt.UTC)
SEEDED = repository.RunContext("test", "seeded")


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def nasdaq(start: str, end: str) -> list[dt.date]:
    return calendars.sessions_between("NASDAQ", d(start), d(end))


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(BEFORE)


@pytest.fixture
def sim(tws_simulator_factory, clock, monkeypatch):
    """Return a simulator whose market clock the test moves; the ibkr connection points at it."""
    simulator = tws_simulator_factory(clock=clock)
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://{simulator.host}:{simulator.port}?client_id=10&client_id_range=32"
        "&connect_timeout=5&request_timeout=20",
    )
    return simulator


def load(url: str, symbols: tuple[str, ...]):
    with psycopg.connect(url) as conn, IbkrHook() as hook:
        return load_symbols(conn, hook, [entry for entry in load_universe() if entry.symbol in symbols])


@pytest.fixture
def two_symbols(market_db, sim):
    report = load(market_db, ("AAPL", "MSFT"))
    assert sorted(report.resolved) == ["AAPL", "MSFT"]


def symbol_id(url: str, symbol: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id FROM symbols WHERE symbol = %s", (symbol,)).fetchone()[0]


def store_daily(url: str, sim, symbol: str, sessions: list[dt.date], as_of: dt.datetime = BEFORE) -> None:
    """Store the daily bars IB served for ``sessions`` as of ``as_of``, as earlier runs would have."""
    bars = [stored_bar(sim.served.daily_bar(symbol, day, as_of)) for day in sessions]
    with psycopg.connect(url) as conn:
        repository.store_backfilled_bars(conn, symbol_id(url, symbol), "1day", bars, SEEDED)


def store_intraday(url: str, sim, symbol: str, timeframe: str, seconds: int, sessions: list[dt.date]) -> None:
    bars = [
        stored_bar(bar)
        for day in sessions
        for bar in sim.served.intraday_bars(symbol, day, seconds, True, BEFORE)
    ]
    with psycopg.connect(url) as conn:
        repository.store_backfilled_bars(conn, symbol_id(url, symbol), timeframe, bars, SEEDED)


def stored(url: str, symbol: str, timeframe: str = "1day") -> dict[dt.datetime, Bar]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT md.timestamp, md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count
            FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            WHERE s.symbol = %s AND md.timeframe = %s ORDER BY md.timestamp
            """,
            (symbol, timeframe),
        ).fetchall()
    return {row[0]: Bar(*row) for row in rows}


def served_daily(sim, symbol: str, sessions, as_of: dt.datetime) -> dict[dt.datetime, Bar]:
    bars = [stored_bar(sim.served.daily_bar(symbol, day, as_of)) for day in sessions]
    return {bar.timestamp: bar for bar in bars}


def served_intraday(sim, symbol: str, seconds: int, sessions, as_of: dt.datetime) -> dict[dt.datetime, Bar]:
    bars = [
        stored_bar(bar)
        for day in sessions
        for bar in sim.served.intraday_bars(symbol, day, seconds, True, as_of)
    ]
    return {bar.timestamp: bar for bar in bars}


def actions(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT s.symbol, ca.kind, ca.effective_session, ca.ratio, ca.detected_by, ca.details
            FROM corporate_actions ca JOIN symbols s ON s.id = ca.symbol_id ORDER BY ca.id
            """
        ).fetchall()


def latest_attempts(url: str, run_id: str) -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT DISTINCT ON (s.symbol) s.symbol, cl.status, cl.error_message, cl.error_code, cl.try_number
            FROM collection_logs cl JOIN symbols s ON s.id = cl.symbol_id
            WHERE cl.run_id = %s AND cl.timeframe = '1day'
            ORDER BY s.symbol, cl.start_date, cl.try_number DESC, cl.id DESC
            """,
            (run_id,),
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


# -- splits -------------------------------------------------------------------------------------

#: AAPL's stored daily history: two contiguous ranges (nothing stored 2025-01-02..2025-01-14).
DAILY_HISTORY = nasdaq("2024-06-03", "2024-12-31") + nasdaq("2025-01-15", "2025-06-13")
FIVE_MINUTE_SESSIONS = nasdaq("2025-05-05", "2025-05-09")
ONE_MINUTE_SESSIONS = [d("2025-06-02")]


def test_a_split_inside_a_stored_year_rebases_every_stored_bar_in_one_request_per_range(
    daily_dag, two_symbols, market_db, sim, clock
):
    """Rebase AAPL's history after its 4:1 split on 2025-06-16, found by the next daily run.

    The run's lookback sees its last sessions change by one ratio: one split, and every stored bar
    (daily and intraday) fetched again on the new basis.
    """
    store_daily(market_db, sim, "AAPL", DAILY_HISTORY)
    store_daily(market_db, sim, "MSFT", nasdaq("2025-06-02", "2025-06-13"))
    store_intraday(market_db, sim, "AAPL", "5min", 300, FIVE_MINUTE_SESSIONS)
    store_intraday(market_db, sim, "AAPL", "1min", 60, ONE_MINUTE_SESSIONS)
    old_basis = sum(len(stored(market_db, "AAPL", tf)) for tf in ("1day", "5min", "1min"))
    assert stored(market_db, "AAPL") == served_daily(sim, "AAPL", DAILY_HISTORY, BEFORE)

    sim.faults.set("AAPL", split={"date": CHANGE_DAY.isoformat(), "ratio": 4})
    clock.set(AFTER)
    dag_run = daily_dag.test(run_conf={"date": CHANGE_DAY.isoformat()})
    assert dag_run.state == "success"

    # The stored series is IB's current split-adjusted one for every stored bar: none on the old basis.
    daily = stored(market_db, "AAPL")
    assert daily == served_daily(sim, "AAPL", [*DAILY_HISTORY, CHANGE_DAY], AFTER)
    assert stored(market_db, "AAPL", "5min") == served_intraday(sim, "AAPL", 300, FIVE_MINUTE_SESSIONS, AFTER)
    assert stored(market_db, "AAPL", "1min") == served_intraday(sim, "AAPL", 60, ONE_MINUTE_SESSIONS, AFTER)
    assert daily[dt.datetime(2025, 6, 13)].close < daily[dt.datetime(2024, 6, 3)].close  # 4:1, not a cliff

    # One corporate action, its counts, and every changed bar a revision of this run.
    [(symbol, kind, effective, ratio, detected_by, details)] = actions(market_db)
    assert (symbol, kind, effective, ratio, detected_by) == (
        "AAPL",
        "split",
        CHANGE_DAY,
        Decimal("4"),
        "lookback",
    )
    assert details["rebase"] == "done" and details["revised_by_lookback"] == 4
    with psycopg.connect(market_db) as conn:
        revised = dict(
            conn.execute(
                "SELECT timeframe, COUNT(*) FROM bar_revisions WHERE run_id = %s GROUP BY 1",
                (dag_run.run_id,),
            ).fetchall()
        )
    assert sum(revised.values()) == old_basis
    assert revised == {"1day": len(DAILY_HISTORY), "5min": 5 * 78, "1min": 390}
    refetched = details["refetched"]
    assert refetched["1day"]["revised"] + 4 == len(DAILY_HISTORY) and refetched["1day"]["not_served"] == 0

    # Requests: the lookback's one, then at most one per contiguous range of each timeframe.
    requests = sim.request_log.historical(symbol="AAPL")
    by_size = {size: [r for r in requests if r.bar_size == size] for size in ("1 day", "5 mins", "1 min")}
    assert [len(by_size["1 day"]) - 1, len(by_size["5 mins"]), len(by_size["1 min"])] == [2, 1, 1]
    assert [refetched[tf]["ranges"] for tf in ("1day", "5min", "1min")] == [2, 1, 1]
    assert [refetched[tf]["requests"] for tf in ("1day", "5min", "1min")] == [2, 1, 1]
    assert all(r.outcome.startswith("bars:") for r in requests)
    assert sim.violations() == []

    # MSFT did not split: nothing recorded, nothing re-fetched; no spike finding anywhere.
    assert len(sim.request_log.historical(symbol="MSFT")) == 1
    with psycopg.connect(market_db) as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM data_quality_issues WHERE check_name = 'spike'").fetchone()[0]
            == 0
        )

    # The next day: one lookback request, nothing more recorded or re-fetched.
    clock.set(NEXT_EVENING)
    before = len(sim.request_log.historical(symbol="AAPL"))
    assert daily_dag.test(run_conf={"date": NEXT_DAY.isoformat()}).state == "success"
    assert len(sim.request_log.historical(symbol="AAPL")) == before + 1
    assert len(actions(market_db)) == 1


# -- identity over time -------------------------------------------------------------------------


@pytest.mark.parametrize("history_error", [162, 200])
def test_the_day_after_a_delisting_the_run_succeeds_and_the_symbol_is_inactive_with_its_last_session(
    daily_dag, two_symbols, market_db, sim, clock, history_error
):
    week = nasdaq("2025-06-02", "2025-06-13")
    store_daily(market_db, sim, "MSFT", week)
    store_daily(market_db, sim, "AAPL", week)
    sim.faults.set("MSFT", delisting={"date": CHANGE_DAY.isoformat(), "error": history_error})
    clock.set(AFTER)

    dag_run = daily_dag.test(run_conf={"date": CHANGE_DAY.isoformat()})
    assert dag_run.state == "success"

    with psycopg.connect(market_db) as conn:
        active, reason, last_session, since = conn.execute(
            "SELECT active, inactive_reason, last_session, inactive_since FROM symbols WHERE symbol = 'MSFT'"
        ).fetchone()
    assert (active, last_session) == (False, d("2025-06-13")) and since is not None
    assert reason.startswith(
        "delisted: IB has no security definition for it as of 2025-06-16; last session 2025-06-13"
    )
    assert list(stored(market_db, "MSFT")) == [dt.datetime.combine(day, dt.time()) for day in week]
    [(symbol, kind, effective, _, detected_by, details)] = actions(market_db)
    assert (symbol, kind, effective, detected_by) == ("MSFT", "delisting", CHANGE_DAY, "daily run")
    assert details["last_session"] == "2025-06-13"
    msft_status = latest_attempts(market_db, dag_run.run_id)["MSFT"]
    assert msft_status[0] == ("skipped" if history_error == 200 else "no_data")

    # It stops failing every day: the next run asks IB nothing about it.
    clock.set(NEXT_EVENING)
    asked = len(sim.request_log.historical(symbol="MSFT"))
    assert daily_dag.test(run_conf={"date": NEXT_DAY.isoformat()}).state == "success"
    assert len(sim.request_log.historical(symbol="MSFT")) == asked


def test_a_con_id_change_keeps_the_history_continuous_under_one_symbol(
    daily_dag, two_symbols, market_db, sim, clock
):
    week = nasdaq("2025-06-02", "2025-06-13")
    store_daily(market_db, sim, "AAPL", week)
    old_con_id = sim.model.contract("AAPL").con_id
    sim.faults.set("AAPL", con_id_change={"date": CHANGE_DAY.isoformat(), "con_id": 987654321})
    clock.set(AFTER)

    dag_run = daily_dag.test(run_conf={"date": CHANGE_DAY.isoformat(), "symbols": ["AAPL"]})
    assert dag_run.state == "success"

    aapl = symbol_id(market_db, "AAPL")
    with psycopg.connect(market_db) as conn:
        con_id, active = conn.execute("SELECT con_id, active FROM symbols WHERE id = %s", (aapl,)).fetchone()
        identities = conn.execute(
            "SELECT con_id, valid_from, valid_to FROM symbol_identities WHERE symbol_id = %s ORDER BY con_id",
            (aapl,),
        ).fetchall()
        ids = {row[0] for row in conn.execute("SELECT DISTINCT symbol_id FROM market_data").fetchall()}
    assert (con_id, active) == (987654321, True)
    assert identities == [(old_con_id, None, d("2025-06-15")), (987654321, CHANGE_DAY, None)]
    assert ids == {aapl}, "one symbol holds the history before and after"
    # Continuous: every session up to the change day, the new one fetched by the new conId.
    assert stored(market_db, "AAPL") == served_daily(sim, "AAPL", [*week, CHANGE_DAY], AFTER)
    [(symbol, kind, effective, _, detected_by, details)] = actions(market_db)
    assert (symbol, kind, effective, detected_by) == ("AAPL", "con_id_change", CHANGE_DAY, "daily run")
    assert details == {"old_con_id": old_con_id, "new_con_id": 987654321}
    status, _, _, try_number = latest_attempts(market_db, dag_run.run_id)["AAPL"]
    assert (status, try_number) == ("completed", 2)
    by_con_id = [r.con_id for r in sim.request_log.historical(symbol="AAPL")]
    assert by_con_id == [old_con_id, 987654321]


def test_a_symbol_removed_from_the_universe_stops_being_collected_and_keeps_its_bars(
    daily_dag, two_symbols, market_db, sim
):
    week = nasdaq("2025-06-02", "2025-06-13")
    store_daily(market_db, sim, "MSFT", week)
    report = load(market_db, ("AAPL",))
    assert report.retired == ["MSFT"]
    with psycopg.connect(market_db) as conn:
        active, reason, since = conn.execute(
            "SELECT active, inactive_reason, inactive_since FROM symbols WHERE symbol = 'MSFT'"
        ).fetchone()
    assert (active, reason) == (False, "removed from the universe files") and since is not None
    assert len(stored(market_db, "MSFT")) == len(week)

    dag_run = daily_dag.test(run_conf={"date": "2025-06-13"})
    assert dag_run.state == "success"
    assert sim.request_log.historical(symbol="MSFT") == []
    assert len(stored(market_db, "MSFT")) == len(week)

    # Listed again, it is collected again, without resolving it anew.
    resolutions = len(sim.request_log.contract_details(symbol="MSFT"))
    again = load(market_db, ("AAPL", "MSFT"))
    assert again.returned == ["MSFT"] and again.retired == []
    assert len(sim.request_log.contract_details(symbol="MSFT")) == resolutions
    with psycopg.connect(market_db) as conn:
        assert conn.execute("SELECT active FROM symbols WHERE symbol = 'MSFT'").fetchone() == (True,)


def test_symbols_are_resolved_again_once_their_resolution_is_a_week_old(
    daily_dag, two_symbols, market_db, sim, monkeypatch
):
    """Over a week old: asked again, the oldest first and a bounded number per run."""
    from ibkr_market_data import identity

    monkeypatch.setattr(identity, "RECHECKS_PER_RUN", 1)
    with psycopg.connect(market_db) as conn:
        conn.execute("UPDATE symbols SET resolved_at = NOW() - interval '9 days' WHERE symbol = 'AAPL'")
        conn.execute("UPDATE symbols SET resolved_at = NOW() - interval '8 days' WHERE symbol = 'MSFT'")

    def asked_after(date: str) -> dict[str, int]:
        before = {symbol: len(sim.request_log.contract_details(symbol=symbol)) for symbol in ("AAPL", "MSFT")}
        assert daily_dag.test(run_conf={"date": date}).state == "success"
        return {
            symbol: len(sim.request_log.contract_details(symbol=symbol)) - before[symbol] for symbol in before
        }

    assert asked_after("2025-06-12") == {"AAPL": 1, "MSFT": 0}
    assert asked_after("2025-06-13") == {"AAPL": 0, "MSFT": 1}
    assert asked_after("2025-06-13") == {"AAPL": 0, "MSFT": 0}, "resolved this week: not asked"
    with psycopg.connect(market_db) as conn:
        ages = conn.execute("SELECT MAX(NOW() - resolved_at) FROM symbols").fetchone()[0]
    assert ages < dt.timedelta(hours=1)
    assert actions(market_db) == []


def test_a_backfill_resolves_its_symbols_again_first_and_asks_by_the_new_con_id(
    backfill_dag, two_symbols, market_db, sim, clock
):
    sim.faults.set("AAPL", con_id_change={"date": CHANGE_DAY.isoformat(), "con_id": 987654321})
    clock.set(AFTER)
    dag_run = backfill_dag.test(
        run_conf={"start_date": "2025-06-09", "end_date": "2025-06-13", "symbols": ["AAPL"]}
    )
    assert dag_run.state == "success"
    assert {r.con_id for r in sim.request_log.historical(symbol="AAPL")} == {987654321}
    assert stored(market_db, "AAPL") == served_daily(sim, "AAPL", nasdaq("2025-06-09", "2025-06-13"), AFTER)
    [(symbol, kind, _, _, detected_by, _)] = actions(market_db)
    assert (symbol, kind, detected_by) == ("AAPL", "con_id_change", "backfill")


# -- coverage, and bad input --------------------------------------------------------------------


def test_coverage_expects_a_symbol_inside_its_membership_and_a_delisted_one_up_to_its_last_session(db_conn):
    from ibkr_market_data import coverage

    db_conn.execute(
        """
        INSERT INTO symbols (id, symbol, exchange, primary_exchange, currency, con_id, active, last_session)
        VALUES (1, 'AAPL', 'SMART', 'NASDAQ', 'USD', 1, TRUE, NULL),
               (2, 'MSFT', 'SMART', 'NASDAQ', 'USD', 2, FALSE, '2025-06-11'),  -- delisted
               (3, 'NVDA', 'SMART', 'NASDAQ', 'USD', 3, TRUE, NULL),  -- joined the list on the 11th
               (4, 'AMZN', 'SMART', 'NASDAQ', 'USD', 4, FALSE, NULL)  -- removed from the universe files
        """
    )
    db_conn.execute("INSERT INTO universe_memberships VALUES (3, 'nasdaq100', '2025-06-11', NULL)")
    week = nasdaq("2025-06-09", "2025-06-13")
    for symbol_id in (1, 2, 3, 4):
        db_conn.execute(
            "INSERT INTO market_data (symbol_id, timeframe, timestamp, open, high, low, close)"
            " SELECT %s, '1day', day, 10, 11, 9, 10 FROM unnest(%s::timestamp[]) day",
            (symbol_id, [dt.datetime.combine(day, dt.time()) for day in week]),
        )
    db_conn.commit()
    rows = {row.date: (row.expected, row.stored) for row in coverage.coverage(db_conn, week[0], week[-1])}
    # 9-10: AAPL, MSFT; 11: AAPL, MSFT (its last session), NVDA (its first); 12-13: AAPL, NVDA.
    assert rows == {week[0]: (2, 2), week[1]: (2, 2), week[2]: (3, 3), week[3]: (2, 2), week[4]: (2, 2)}


def test_a_universe_row_whose_to_is_before_its_from_ends_load_symbols_with_one_error_line(
    market_db, tmp_path, monkeypatch, capsys
):
    from ibkr_market_data import cli, universe

    header = ",".join(universe.COLUMNS) + ",from,to"
    bad = tmp_path / "asx200.csv"
    bad.write_text(
        f"{header}\nBHP,STK,ASX,ASX,AUD,100001,1,equity,BHP,,\nCBA,STK,ASX,ASX,AUD,100002,1,equity,CBA,2025-03-01,2025-02-28\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(universe, "load_universe", lambda: universe.load_universe_files([bad]))
    monkeypatch.setattr(cli, "migrate_command", lambda: pytest.fail("migrated despite a bad universe file"))

    assert cli.main(["load-symbols"]) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert errors == [
        "error: asx200.csv:3: column 'to' (2025-02-28) is before column 'from' (2025-03-01); "
        "the membership period must run forward"
    ]


# -- the file of known actions -----------------------------------------------------------------

KNOWN_HEADER = "symbol,primary_exchange,kind,effective_session,ratio,amount,new_symbol,new_con_id,note"


def test_known_actions_rename_a_ticker_keep_its_history_and_record_the_rest(
    two_symbols, market_db, sim, clock
):
    """A ticker change renames the symbol's row (history kept); a split waits for the next daily run."""
    import dataclasses

    from ibkr_market_data.known_actions import parse_known_actions

    week = nasdaq("2025-06-02", "2025-06-13")
    store_daily(market_db, sim, "MSFT", week)
    msft = symbol_id(market_db, "MSFT")
    known = parse_known_actions(
        "actions.csv",
        f"{KNOWN_HEADER}\n"
        "MSFT,NASDAQ,ticker_change,2025-06-16,,,MSFZ,,renamed\n"
        "AAPL,NASDAQ,split,2025-06-16,4,,,,announced\n",
    )
    # The universe file names the new ticker; the file of known actions says it is the old listing.
    universe = [
        dataclasses.replace(entry, symbol="MSFZ") if entry.symbol == "MSFT" else entry
        for entry in load_universe()
        if entry.symbol in ("AAPL", "MSFT")
    ]
    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        report = load_symbols(conn, hook, universe, known)
        again = load_symbols(conn, hook, universe, known)
        rows = conn.execute("SELECT id, symbol, active FROM symbols ORDER BY id").fetchall()
        pending = repository.splits_to_rebase(conn)
    assert report.renamed == ["MSFT -> MSFZ"] and report.retired == [] and report.known_actions == 1
    assert again.renamed == [] and again.known_actions == 0, "a second load records nothing twice"
    assert rows == [(symbol_id(market_db, "AAPL"), "AAPL", True), (msft, "MSFZ", True)]
    assert len(stored(market_db, "MSFZ")) == len(week)
    assert [(symbol, kind, detected_by) for symbol, kind, _, _, detected_by, _ in actions(market_db)] == [
        ("MSFZ", "ticker_change", "actions file"),
        ("AAPL", "split", "actions file"),
    ]
    assert [(row["effective_session"], row["ratio"]) for row in pending] == [(CHANGE_DAY, Decimal(4))]


def test_an_unknown_corporate_action_kind_ends_load_symbols_with_one_error_line(
    market_db, tmp_path, monkeypatch, capsys
):
    from ibkr_market_data import cli

    path = tmp_path / "actions.csv"
    path.write_text(f"{KNOWN_HEADER}\nAAPL,NASDAQ,merger,2025-06-16,,,,,\n", encoding="utf-8")
    monkeypatch.setenv("IBKR_CORPORATE_ACTIONS_FILE", str(path))
    monkeypatch.setattr(cli, "migrate_command", lambda: pytest.fail("migrated despite a bad actions file"))

    assert cli.main(["load-symbols"]) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert errors == [
        "error: actions.csv:2: column 'kind': corporate-action kind 'merger' is unknown; "
        "known: split, dividend, delisting, con_id_change, ticker_change"
    ]
