"""``make collect`` / ``make backfill`` on embedded defaults.

The simulator never feeds a configured database.
"""

from __future__ import annotations

import pytest

from ibkr_market_data_dev import local_cli, local_env


def test_a_configured_market_db_without_ibkr_is_refused_before_anything_starts(
    market_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_IBKR_DEFAULT", raising=False)
    started: list[object] = []
    monkeypatch.setattr(local_env, "local_ibkr", lambda *args, **kwargs: started.append(args))

    assert local_cli.main(["collect", "--date", "2025-01-15"]) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "market_data_db is configured but ibkr_default is not" in errors[0]
    assert started == []


def test_an_ibkr_connection_in_airflows_metadata_counts_as_configured(airflow_db, monkeypatch) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    monkeypatch.delenv("AIRFLOW_CONN_IBKR_DEFAULT", raising=False)
    assert not local_env.is_configured("ibkr_default")
    with create_session() as session:
        session.add(Connection(conn_id="ibkr_default", conn_type="ibkr", host="gateway.internal", port=4001))
    try:
        assert local_env.is_configured("ibkr_default")
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == "ibkr_default").delete()
    assert not local_env.is_configured("ibkr_default")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["collect", "--date", "2025-01-18"], "--date is 2025-01-18 (Saturday)"),
        (["collect", "--date", "15/01/2025"], "--date must be a date as YYYY-MM-DD"),
        (["backfill", "--from", "2025-01-17", "--to", "2025-01-13"], "'start_date'"),
        (["backfill", "--from", "2025-01-01", "--to", "2025-01-31", "--exchanges", "LSE"], "'exchanges'"),
        (["collect", "--date", "2025-01-15", "--timeframe", "2min"], "--timeframe: unknown timeframe '2min'"),
        (
            ["backfill", "--from", "2025-01-13", "--to", "2025-01-17", "--timeframe", "1m"],
            "unknown timeframe '1m'",
        ),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2_before_anything_starts(
    argv: list[str], named: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(local_env, "configure_airflow", lambda *args: pytest.fail("started on bad input"))
    assert local_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error:") and named in err


@pytest.mark.parametrize(
    "argv", [["collect", "--date", "2025-01-15"], ["backfill", "--from", "2025-01-13", "--to", "2025-01-17"]]
)
def test_a_bad_quality_setting_is_one_error_line_and_exit_2_before_anything_starts(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IBKR_QUALITY_SEVERITIES", "spike=fatal")
    monkeypatch.setattr(local_env, "configure_airflow", lambda *args: pytest.fail("started on bad input"))
    assert local_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: IBKR_QUALITY_SEVERITIES entry 'spike=fatal' must be check=severity, checks: spike, "
        "stale_price, volume_units, missing_session, intraday_vs_daily, short_session, derived_vs_ib; "
        "severities: ignore, warning, error"
    ]


def test_a_bad_ibkr_extra_is_one_error_line_naming_it(
    market_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ibkr_market_data import cli

    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", "ibkr://127.0.0.1:4002?client_id_range=0")
    assert cli.main(["load-symbols"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "client_id_range" in errors[0]


def test_an_unreachable_gateway_is_one_error_line_and_exit_1(
    market_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from ibkr_market_data import cli

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", f"ibkr://127.0.0.1:{port}?connect_timeout=2")
    monkeypatch.setattr("ibkr_market_data.symbols.RESOLVE_OUTAGE_SECONDS", 1.0)  # waited out, then the error
    assert cli.main(["load-symbols"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0]


@pytest.mark.parametrize("value", ["many", "-3", "1e3", "99999999"])
def test_a_bad_synthetic_symbol_count_is_refused_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IBKR_SYNTHETIC_SYMBOLS", value)
    with pytest.raises(local_env.LocalSetupError, match="IBKR_SYNTHETIC_SYMBOLS"):
        local_env.check_local_setup()


def test_synthetic_symbols_need_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBKR_SYNTHETIC_SYMBOLS", "5")
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", "ibkr://gateway.internal:4001")
    with pytest.raises(local_env.LocalSetupError, match="only the TWS simulator knows"):
        local_env.check_local_setup()


def test_synthetic_symbols_are_served_loaded_and_fetched_locally(
    market_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    import psycopg

    from ibkr_market_data import cli
    from ibkr_market_data.contracts import ContractSpec
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data_dev.simulated_ib import local_universe, stored_bar
    from tws_simulator.universe import synthetic_listings

    monkeypatch.setenv("IBKR_SYNTHETIC_SYMBOLS", "30")
    monkeypatch.delenv("AIRFLOW_CONN_IBKR_DEFAULT", raising=False)
    with local_env.local_ibkr() as simulator:
        assert simulator is not None and len(simulator.model.contracts) == 320 + 30
        assert cli.load_symbols_command(universe=local_universe()) == 0
        synthetic = synthetic_listings(30)
        with IbkrHook() as hook:
            [bar] = hook.fetch_bars(
                ContractSpec(synthetic[0].symbol, primary_exchange=synthetic[0].primary_exchange),
                "20250115 23:59:59 US/Eastern",
                "1 D",
                "1 day",
            )
        assert bar == stored_bar(simulator.model.daily_bar(synthetic[0].symbol, dt.date(2025, 1, 15)))
    with psycopg.connect(market_db) as conn:
        rows = conn.execute(
            "SELECT symbol, con_id, active, source_list FROM symbols "
            "WHERE source_list = 'synthetic' ORDER BY con_id"
        ).fetchall()
    assert [(symbol, con_id, active) for symbol, con_id, active, _ in rows] == [
        (listing.symbol, listing.con_id, True) for listing in synthetic
    ]

    # A plain command after it (make run, make collect) loads the shipped universe alone: the
    # synthetic symbols are retired, not tried again, and their rows stay.
    monkeypatch.delenv("IBKR_SYNTHETIC_SYMBOLS")
    with local_env.local_ibkr():
        assert cli.load_symbols_command(universe=local_universe()) == 0
    with psycopg.connect(market_db) as conn:
        synthetic_state = conn.execute(
            "SELECT DISTINCT active, inactive_reason FROM symbols WHERE source_list = 'synthetic'"
        ).fetchall()
        active = conn.execute("SELECT COUNT(*) FROM symbols WHERE active").fetchone()[0]
    assert synthetic_state == [(False, "removed from the universe files")]
    assert active == 320


def test_the_local_simulator_takes_the_faults_clock_and_seed_make_sim_takes(
    market_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    monkeypatch.delenv("AIRFLOW_CONN_IBKR_DEFAULT", raising=False)
    monkeypatch.setenv("IBKR_SIM_FAULTS", '{"AAPL": {"illiquid_sessions": ["2025-06-24"]}}')
    monkeypatch.setenv("IBKR_SIM_NOW", "2025-06-30T12:00:00")
    monkeypatch.setenv("IBKR_SIM_SEED", "7")
    with local_env.local_ibkr() as simulator:
        assert simulator is not None
        assert simulator.faults.snapshot() == {"AAPL": {"illiquid_sessions": ["2025-06-24"]}}
        assert simulator.simulator.now() == dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC)
        assert simulator.config.seed == 7
        assert not simulator.served.traded("AAPL", dt.date(2025, 6, 24))


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("IBKR_SIM_FAULTS", '{"AAPL": {"halt": true}}', "Unknown fault 'halt'"),
        ("IBKR_SIM_FAULTS", '{"NOPE": {"no_data": true}}', "symbols the universe does not list: NOPE"),
        ("IBKR_SIM_NOW", "yesterday", "IBKR_SIM_NOW is 'yesterday'"),
    ],
)
def test_a_bad_simulator_setting_stops_the_local_commands_with_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, named: str
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_IBKR_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_MARKET_DATA_DB", raising=False)
    monkeypatch.setenv(variable, value)
    started: list[object] = []
    monkeypatch.setattr(local_env, "local_ibkr", lambda *args, **kwargs: started.append(args))

    assert local_cli.main(["collect", "--date", "2025-01-15"]) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0], errors
    assert started == []
