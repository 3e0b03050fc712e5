"""``python -m tws_simulator``: configuration from the environment, and a real run."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ib_insync import IB, Stock

from ibkr_market_data_dev.simulated_ib import shipped_universe_files
from tws_simulator.__main__ import DEFAULT_PORT, build_config

REPO = Path(__file__).resolve().parents[2]
UNIVERSE = os.pathsep.join(str(path) for path in shipped_universe_files())


def test_defaults_bind_loopback_on_4002() -> None:
    config = build_config([], environ={"IBKR_SIM_UNIVERSE": UNIVERSE})
    assert (config.host, config.port, config.seed, dict(config.faults)) == ("127.0.0.1", DEFAULT_PORT, 42, {})
    assert "AAPL" in {listing.symbol for listing in config.universe}


def test_the_universe_comes_from_the_files_given(tmp_path: Path) -> None:
    listings = tmp_path / "two.csv"
    listings.write_text(
        "symbol,sec_type,exchange,primary_exchange,currency,con_id\n"
        "AAPL,STK,SMART,NASDAQ,USD,265598\nBHP,STK,ASX,ASX,AUD,4036812\n"
    )
    config = build_config(["--universe", str(listings)], environ={"IBKR_SIM_UNIVERSE": UNIVERSE})
    assert [(listing.symbol, listing.con_id) for listing in config.universe] == [
        ("AAPL", 265598),
        ("BHP", 4036812),
    ]


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "--universe"),
        ({"IBKR_SIM_UNIVERSE": "/nonexistent/universe.csv"}, "/nonexistent/universe.csv"),
        ({"IBKR_SIM_UNIVERSE": UNIVERSE, "IBKR_SIM_PORT": "four"}, "--port"),
        ({"IBKR_SIM_UNIVERSE": UNIVERSE, "IBKR_SIM_PORT": "70000"}, "--port"),
        ({"IBKR_SIM_UNIVERSE": UNIVERSE, "IBKR_SIM_SEED": "1.5"}, "--seed"),
        ({"IBKR_SIM_UNIVERSE": UNIVERSE, "IBKR_SIM_NOW": "yesterday"}, "IBKR_SIM_NOW"),
    ],
)
def test_bad_settings_end_in_one_usage_error_naming_them(
    environ: dict[str, str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_config([], environ=environ)
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and named in error_lines[0]


def test_environment_sets_port_seed_faults_and_now() -> None:
    config = build_config(
        [],
        environ={
            "IBKR_SIM_UNIVERSE": UNIVERSE,
            "IBKR_SIM_PORT": "4100",
            "IBKR_SIM_SEED": "7",
            "IBKR_SIM_FAULTS": '{"*": {"latency_ms": 200}, "AAPL": {"no_permission": true}}',
            "IBKR_SIM_NOW": "2025-06-30T12:00:00",
        },
    )
    assert (config.port, config.seed) == (4100, 7)
    assert config.faults == {"*": {"latency_ms": 200}, "AAPL": {"no_permission": True}}
    assert config.clock() == dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC)
    assert (
        build_config(
            ["--port", "4200"], environ={"IBKR_SIM_PORT": "4100", "IBKR_SIM_UNIVERSE": UNIVERSE}
        ).port
        == 4200
    )


@pytest.mark.parametrize("faults", ['{"AAPL": {"no_permision": true}}', "[1]", "{not json"])
def test_bad_faults_are_refused_with_a_usage_error(faults: str) -> None:
    with pytest.raises(SystemExit):
        build_config([], environ={"IBKR_SIM_FAULTS": faults, "IBKR_SIM_UNIVERSE": UNIVERSE})


def test_the_command_serves_a_real_client_and_reports_at_exit() -> None:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO / "include"),
        "IBKR_SIM_PORT": "0",
        "IBKR_SIM_UNIVERSE": UNIVERSE,
        "IBKR_SIM_NOW": "2025-06-30T12:00:00+00:00",
        "IBKR_SIM_FAULTS": '{"MSFT": {"no_permission": true}}',
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tws_simulator"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                break
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
        assert port is not None, "the simulator did not report its port"
        ib = IB()
        ib.connect("127.0.0.1", port, clientId=1, readonly=True, timeout=10)
        bars = ib.reqHistoricalData(Stock("AAPL", "SMART", "USD"), "", "1 W", "1 day", "TRADES", True)
        refused = ib.reqHistoricalData(Stock("MSFT", "SMART", "USD"), "", "1 W", "1 day", "TRADES", True)
        ib.disconnect()
        assert len(bars) == 5 and len(refused) == 0
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Served 2 requests." in stdout and "No IB rule was broken." in stdout


@pytest.mark.parametrize(
    ("faults", "named"),
    [
        ('{"AAPL": {"no_permision": true}}', "'no_permision'"),
        ('{"AAPL": {"latency_ms": -5}}', "latency_ms"),
        ('{"AAPL": {"split": {"date": "2025-06-16", "ratio": 0}}}', "ratio"),
        ('{"AAPL": {"split": {"date": "16/06/2025", "ratio": 4}}}', "16/06/2025"),
        ('{"AAPL": {"halts": {"date": "2025-06-25", "from": "13:30", "to": "11:00"}}}', "halts"),
        ('{"AAPL": {"illiquid_sessions": 1.5}}', "illiquid_sessions"),
        ('{"AAPL": {"illiquid_minutes": 1}}', "illiquid_minutes"),
        ('{"AAPL": {"late_correction_days": "two"}}', "late_correction_days"),
        ('{"MSFT": {"delisting": {"date": "2025-06-20", "error": 404}}}', "error takes 162 or 200"),
        ('{"*": {"delisting": "2025-06-20"}}', "delisting"),
        ('{"AAPL": {"connect_notices": true}}', "connect_notices"),
        ('{"APPL": {"no_data": true}}', "APPL"),
        ('{"AAPL": {"con_id_change": {"date": "2025-06-16", "con_id": 200002}}}', "200002"),
    ],
)
def test_bad_fault_names_and_values_end_in_one_error_line_naming_them(
    faults: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_config([], environ={"IBKR_SIM_FAULTS": faults, "IBKR_SIM_UNIVERSE": UNIVERSE})
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and named in error_lines[0] and "IBKR_SIM_FAULTS" in error_lines[0]


def test_every_new_setting_is_accepted_from_the_environment() -> None:
    faults = (
        '{"*": {"connect_notices": true, "account_sync_ms": 500, "latency_per_open_request_ms": 20},'
        ' "AAPL": {"illiquid_sessions": ["2025-06-24"], "illiquid_minutes": 0.2, "late_correction_days": 2,'
        ' "halts": [{"date": "2025-06-25", "from": "11:00", "to": "13:30"}],'
        ' "split": {"date": "2025-06-16", "ratio": 4}, "con_id_change": {"date": "2025-06-16", "con_id": 9}},'
        ' "MSFT": {"delisting": {"date": "2025-06-20", "error": 200}, "hmds_farm_stall": 1,'
        ' "bars_out_of_order": true, "duplicate_bar": 2, "split_answer": true, "naive_bar_times": true}}'
    )
    config = build_config([], environ={"IBKR_SIM_FAULTS": faults, "IBKR_SIM_UNIVERSE": UNIVERSE})
    assert config.faults["AAPL"]["split"] == {"date": "2025-06-16", "ratio": 4}


def test_the_command_refuses_a_bad_fault_with_one_error_line_and_status_2() -> None:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO / "include"),
        "IBKR_SIM_UNIVERSE": UNIVERSE,
        "IBKR_SIM_FAULTS": '{"AAPL": {"split": {"date": "2025-06-16", "ratio": -4}}}',
    }
    finished = subprocess.run(
        [sys.executable, "-m", "tws_simulator"], env=environment, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 2
    assert "Traceback" not in finished.stderr
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m tws_simulator: error: IBKR_SIM_FAULTS for 'AAPL': Fault split")
    assert [line for line in finished.stderr.splitlines() if "error:" in line] == [last]
