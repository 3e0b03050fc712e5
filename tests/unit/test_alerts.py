"""The failed-run alert's subject and text (pure, no database, no mail)."""

from __future__ import annotations

import datetime as dt

from ibkr_market_data import alerts

DAY = dt.date(2025, 1, 14)


def test_a_long_failure_list_is_cut_and_counted():
    failures = [
        {"symbol": f"S{i:03}", "first_date": DAY, "date": DAY, "status": "failed", "error_code": 162,
         "error_message": "pacing violation", "try_number": 4}
        for i in range(alerts.MAX_LISTED + 7)
    ]  # fmt: skip
    subject, text = alerts.failed_run_message("daily_market_data", "scheduled__x", failures)
    assert subject == f"daily_market_data run scheduled__x failed: {alerts.MAX_LISTED + 7} symbols failed"
    assert text.count("\n- S") == alerts.MAX_LISTED
    assert text.endswith("... and 7 more (see the dashboard's failures)")


def test_a_run_failing_before_collecting_says_so():
    subject, text = alerts.failed_run_message("daily_market_data", "manual__y", [], reason="task_failure")
    assert subject == "daily_market_data run manual__y failed"
    assert "Airflow says: task_failure" in text and "failed before or after collecting" in text
