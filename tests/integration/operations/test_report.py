"""``make report``'s summary: coverage per exchange, failures by IB code, run metrics; bad input refused."""

from __future__ import annotations

import pytest

from ibkr_market_data import cli, repository
from tests.integration.operations.conftest import DAILY


def test_report_prints_coverage_failures_and_metrics(week, market_db, db_conn, capsys):
    repository.record_run_metrics(db_conn, DAILY, "scheduled__2025-01-15")
    db_conn.commit()
    code = cli.main(["report", "--from", "2025-01-13", "--to", "2025-01-20"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Market data 2025-01-13..2025-01-20: 6 trading dates" in out
    lines = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line[:6] in ("NASDAQ", "ASX   ", "ARCA  ")
    }
    # expected, stored, failed, no data, missing, complete dates
    assert lines["NASDAQ"][1:6] == ["10", "4", "1", "0", "6"] and lines["NASDAQ"][6] == "1/5"
    assert lines["ASX"][1:6] == ["10", "3", "1", "0", "7"] and lines["ASX"][6] == "2/6"
    assert "Failed attempts: 3" in out
    assert "IB 354       1  e.g. MSFT 2025-01-14: No market data permissions" in out
    assert "Runs started in the range: 1" in out and "scheduled__2025-01-15" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "2025-13-01"], "error: 'FROM' must be a valid calendar date"),
        (["--from", "2025-02-01", "--to", "2025-01-01"], "error: FROM (2025-02-01) is after TO (2025-01-01)"),
        (["--to", "soon"], "error: 'TO' must be a date as YYYY-MM-DD"),
    ],
)
def test_bad_dates_are_one_error_line_and_exit_2(argv, message, capsys, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_DATA_DB", "postgresql://nobody@127.0.0.1:1/none")
    assert cli.main(["report", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and captured.err.count("\n") == 1 and captured.out == ""
