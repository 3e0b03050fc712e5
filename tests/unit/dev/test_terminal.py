"""What the local commands print: stage lines, and log records in their file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import structlog

from ibkr_market_data_dev.terminal import database_line, logs_to_file, simulator_line


def test_the_stage_lines_name_the_database_and_the_simulator_without_a_password() -> None:
    class Simulator:
        host, port = "127.0.0.1", 4002

    assert database_line("postgresql://postgres:secret@db.internal:5433/market_data") == (
        "database: market_data on db.internal:5433"
    )
    assert simulator_line(Simulator()) == "simulator: TWS simulator listening on 127.0.0.1:4002"
    assert simulator_line(None) == "IB: ibkr_default as configured"


def test_log_records_go_to_the_file_while_the_block_runs_and_to_the_terminal_again_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("tests.unit.dev.terminal")
    handler = logging.StreamHandler(sys.stdout)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with logs_to_file(tmp_path / "run.log") as path:
            logger.info("a stdlib record")
            structlog.get_logger("tests").info("a structlog event")
            print("a printed line")
        logger.info("after the block")
    finally:
        logger.removeHandler(handler)

    out = capsys.readouterr().out
    assert out.splitlines() == ["a printed line", "after the block"]
    log = path.read_text()
    assert "a stdlib record" in log and "a structlog event" in log
    assert "after the block" not in log
