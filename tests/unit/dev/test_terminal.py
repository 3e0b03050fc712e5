"""What the local commands print: progress lines now and then, and log records in their file."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest
import structlog

from ibkr_market_data_dev.terminal import (
    ProgressLine,
    database_line,
    logs_to_file,
    progress_text,
    simulator_line,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_progress_line_is_printed_once_an_interval_has_passed_and_when_it_changed() -> None:
    clock, out, asked = Clock(), io.StringIO(), []
    progress = ProgressLine(out, every=15, clock=clock)

    def text(line: str):
        return lambda: asked.append(line) or line

    progress.update(text("at 0 s"))
    clock.now = 14.9
    progress.update(text("at 14.9 s"))
    clock.now = 15
    progress.update(text("at 15 s"))
    clock.now = 30
    progress.update(text("at 15 s"))  # unchanged: not printed again
    progress.update(text("final"), final=True)
    progress.update(text("final"), final=True)

    assert out.getvalue().splitlines() == ["at 15 s", "final"]
    assert asked == ["at 15 s", "at 15 s", "final", "final"], "the text is only worked out when it is due"


def test_a_progress_line_the_api_server_is_too_busy_to_answer_is_skipped_not_raised(caplog) -> None:
    clock, out = Clock(), io.StringIO()
    progress = ProgressLine(out, every=15, clock=clock)

    def timed_out() -> str:
        raise TimeoutError("timed out")

    clock.now = 15
    progress.update(lambda: "progress: 2/20 tasks done")
    clock.now = 30
    progress.update(timed_out)
    progress.update(timed_out, final=True)
    clock.now = 45
    progress.update(lambda: "progress: 20/20 tasks done", final=True)

    assert out.getvalue().splitlines() == ["progress: 2/20 tasks done", "progress: 20/20 tasks done"]
    assert [r.getMessage() for r in caplog.records].count("Could not show the progress: timed out") == 2


@pytest.mark.parametrize(("minutes", "lines"), [(3, 8), (10, 14), (60, 24)])
def test_a_run_polled_every_second_prints_a_few_progress_lines_per_doubling_of_its_length(
    minutes: int, lines: int
) -> None:
    clock, out = Clock(), io.StringIO()
    progress = ProgressLine(out, clock=clock)
    for second in range(minutes * 60):
        clock.now = second
        progress.update(lambda: f"progress: {clock.now:.0f} s")
    progress.update(lambda: "progress: done", final=True)
    printed = out.getvalue().splitlines()
    assert len(printed) == lines and printed[-1] == "progress: done"
    assert printed[:7] == [f"progress: {second} s" for second in (15, 30, 45, 60, 90, 120, 150)]


def test_on_a_terminal_the_progress_line_is_rewritten_in_place_and_ends_with_a_newline() -> None:
    clock, out = Clock(), Terminal()
    progress = ProgressLine(out, every=15, clock=clock)
    for second in range(0, 7):
        clock.now = second
        progress.update(lambda: f"progress: {clock.now:.0f} s")
    progress.update(lambda: "progress: done", final=True)
    assert out.getvalue() == (
        "\r\x1b[Kprogress: 2 s\r\x1b[Kprogress: 4 s\r\x1b[Kprogress: 6 s\r\x1b[Kprogress: done\n"
    )


def test_the_progress_text_counts_finished_tasks_bars_and_failures() -> None:
    states = ["success", "skipped", "running", None, "upstream_failed", "failed", "removed"]
    assert progress_text(states, 3456, 2) == (
        "progress: 5/7 tasks done, 3456 bars stored, 2 symbols failed, 2 tasks failed"
    )
    assert (
        progress_text(["success", "queued"], 0, 0)
        == "progress: 1/2 tasks done, 0 bars stored, 0 symbols failed"
    )


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
