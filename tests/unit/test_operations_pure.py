"""The dashboard's HTML, the alert messages and the freshness delay: pure functions, no database."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from ibkr_market_data import alerts, coverage
from ibkr_market_data.coverage import CoverageRow
from ibkr_market_data.dashboard import pages
from ibkr_market_data.errors import InvalidRangeError

DAY = dt.date(2025, 1, 14)


def test_heatmap_colours_cells_by_completeness_and_marks_closed_sessions():
    rows = [
        CoverageRow(DAY, "ASX", expected=2, stored=2, failed=0, no_data=0),
        CoverageRow(DAY, "NASDAQ", expected=3, stored=1, failed=1, no_data=0),
        CoverageRow(DAY, "ARCA", expected=2, stored=1, failed=0, no_data=0),
        CoverageRow(DAY + dt.timedelta(days=6), "ASX", expected=2, stored=0, failed=0, no_data=2),
    ]
    html = pages.heatmap(rows)
    assert "class='complete'" in html and "data-exchange='ASX' data-date='2025-01-14'" in html
    assert "<td class='failed' title='NASDAQ 2025-01-14: 1 stored of 3 expected, 1 failed, 0 no data'" in html
    assert "<td class='partial' title='ARCA 2025-01-14" in html
    assert "title='NASDAQ does not trade 2025-01-20'" in html  # only ASX has that date
    assert html.count("<td class='complete'") == 2  # no data from IB counts as complete


def test_values_are_escaped_and_symbols_with_spaces_linked_quoted():
    assert pages._symbol_link("/market-data", "BRK A") == (
        "<td><a href='/market-data/symbols/BRK%20A'>BRK A</a></td>"
    )
    assert pages._cell("<script>'x'</script>") == "<td>&lt;script&gt;&#x27;x&#x27;&lt;/script&gt;</td>"
    assert pages._cell(decimal.Decimal("30.55000000"), numeric=True) == "<td class='num'>30.55</td>"


def test_price_chart_of_one_flat_bar_draws_without_dividing_by_zero():
    bar = {"date": DAY, "open": 5, "high": 5, "low": 5, "close": 5, "volume": 0}
    svg = pages.price_chart([bar])
    assert "data-bars='1'" in svg and "nan" not in svg.lower()
    assert "No bars" in pages.price_chart([])


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


@pytest.mark.parametrize(("raw", "minutes"), [("", 180), ("90", 90), ("0", 0), ("soon", 180), ("-5", 180)])
def test_freshness_delay_from_the_environment(monkeypatch, raw, minutes):
    monkeypatch.setenv("IBKR_FRESHNESS_DELAY_MINUTES", raw)
    assert coverage.freshness_delay() == dt.timedelta(minutes=minutes)


def test_due_session_waits_for_the_delay_after_the_close():
    # NASDAQ closes 2025-01-14 at 21:00 UTC; with a 3 h delay the 14th is due from 00:00 UTC on the 15th.
    before = dt.datetime(2025, 1, 14, 23, 59, tzinfo=dt.UTC)
    after = dt.datetime(2025, 1, 15, 0, 0, tzinfo=dt.UTC)
    assert coverage.due_session("NASDAQ", before, dt.timedelta(hours=3)) == dt.date(2025, 1, 13)
    assert coverage.due_session("NASDAQ", after, dt.timedelta(hours=3)) == DAY


def test_ranges_are_checked():
    with pytest.raises(InvalidRangeError, match="is after 'to'"):
        coverage.check_report_range(DAY, DAY - dt.timedelta(days=1))
    with pytest.raises(InvalidRangeError, match="at most 400"):
        coverage.check_report_range(DAY - dt.timedelta(days=401), DAY)
    coverage.check_report_range(DAY - dt.timedelta(days=400), DAY)
