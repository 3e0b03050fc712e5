"""The operator CLI finds ``market_data_db`` and ``ibkr_default`` wherever Airflow keeps connections.

One test per place (environment, metadata database, secrets backend), and one for a connection
defined nowhere. See docs/operations.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ibkr_market_data import cli
from ibkr_market_data.universe import load_universe

CONNECTION_VARIABLES = ("AIRFLOW_CONN_MARKET_DATA_DB", "AIRFLOW_CONN_IBKR_DEFAULT")
SYMBOLS = ("AAPL", "BHP")


@pytest.fixture
def connections_nowhere(market_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start with neither connection in the environment; restore the environment after the test.

    The CLI may export what it resolved into this process's environment: set-then-delete makes
    monkeypatch record each variable, so its undo removes whatever the CLI left.
    """
    for name in CONNECTION_VARIABLES:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    yield


@pytest.fixture
def small_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Have ``load-symbols`` load two symbols instead of the whole shipped universe."""
    universe = [entry for entry in load_universe() if entry.symbol in SYMBOLS]
    monkeypatch.setattr("ibkr_market_data.symbols.load_universe", lambda: universe)
    monkeypatch.setattr("ibkr_market_data.universe.load_universe", lambda: universe)  # the CLI reads it


def ibkr_uri(simulator) -> str:
    return f"ibkr://{simulator.host}:{simulator.port}?client_id=40&client_id_range=8&connect_timeout=5"


def active_symbols(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT symbol FROM symbols WHERE active").fetchall()}


@pytest.fixture(params=["environment", "metadata database", "secrets backend"])
def define_connections(request, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, airflow_db: None):
    """Return a function that defines connections (conn id -> URI) in one place Airflow reads them."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    defined: list[str] = []

    def define(uris: dict[str, str]) -> None:
        if request.param == "environment":
            for conn_id, uri in uris.items():
                monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri)
        elif request.param == "metadata database":  # as the UI's form or `airflow connections add` does
            with create_session() as session:
                session.add_all(Connection(conn_id=conn_id, uri=uri) for conn_id, uri in uris.items())
            defined.extend(uris)
        else:
            path = tmp_path / "connections.json"
            path.write_text(json.dumps(uris))
            monkeypatch.setenv(
                "AIRFLOW__SECRETS__BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend"
            )
            monkeypatch.setenv(
                "AIRFLOW__SECRETS__BACKEND_KWARGS", json.dumps({"connections_file_path": str(path)})
            )

    yield define
    from airflow.sdk.configuration import clear_secrets_backends_cache

    clear_secrets_backends_cache()  # the Task SDK keeps a custom backend once it has built it
    if defined:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id.in_(defined)).delete()


def test_load_symbols_finds_both_connections_where_airflow_keeps_them(
    define_connections,
    connections_nowhere: None,
    small_load: None,
    market_db: str,
    tws_simulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    define_connections({"market_data_db": market_db, "ibkr_default": ibkr_uri(tws_simulator)})
    assert cli.main(["load-symbols"]) == 0, capsys.readouterr().err
    assert active_symbols(market_db) == set(SYMBOLS)
    assert "symbols: 2 in the universe, 2 resolved now, 0 unresolved" in capsys.readouterr().out


def test_a_connection_defined_nowhere_is_one_error_line_naming_it_and_exit_2(
    connections_nowhere: None,
    small_load: None,
    market_db: str,
    tws_simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    airflow_db: None,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", market_db)
    assert cli.main(["load-symbols"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert "ibkr_default" in err[0] and "market_data_db" not in err[0]
    assert os.environ.get("AIRFLOW_CONN_IBKR_DEFAULT") is None
    with psycopg.connect(market_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM symbols").fetchone()[0] == 0, (
            "nothing done before the check"
        )


@pytest.mark.parametrize("command", ["report", "export"])
def test_reading_commands_without_the_market_data_connection_name_it(
    command: str,
    connections_nowhere: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    airflow_db: None,
) -> None:
    argv = [command, "--from", "2025-01-13", "--to", "2025-01-17"]
    assert cli.main(argv + (["--out", str(tmp_path / "bars")] if command == "export" else [])) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "market_data_db" in err[0], err


@pytest.mark.parametrize("define_connections", ["metadata database"], indirect=True)
def test_collect_runs_on_connections_added_as_the_ui_adds_them(
    small_universe,
    define_connections,
    connections_nowhere: None,
    market_db: str,
    ibkr_connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue's path: `airflow connections add`, then `make collect DATE=2025-01-15`."""
    import datetime as dt

    from ibkr_market_data_dev.simulated_ib import stored_bar

    day = dt.date(2025, 1, 15)
    define_connections({"market_data_db": market_db, "ibkr_default": ibkr_uri(ibkr_connection)})
    assert cli.main(["collect", "--date", day.isoformat(), "--symbols", "AAPL"]) == 0, capsys.readouterr().err
    with psycopg.connect(market_db) as conn:
        [row] = conn.execute(
            "SELECT md.timestamp, md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count"
            " FROM market_data md JOIN symbols s ON s.id = md.symbol_id"
            " WHERE s.symbol = 'AAPL' AND md.timestamp = %s",
            (dt.datetime.combine(day, dt.time()),),
        ).fetchall()
    assert row == dataclasses.astuple(stored_bar(ibkr_connection.model.daily_bar("AAPL", day)))
