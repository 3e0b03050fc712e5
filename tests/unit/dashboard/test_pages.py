"""The dashboard's HTML: the coverage heatmap and escaped cells (pure, no database)."""

from __future__ import annotations

import datetime as dt
import decimal

from ibkr_market_data.coverage import CoverageRow
from ibkr_market_data.dashboard import pages

DAY = dt.date(2025, 1, 14)


def test_heatmap_colours_cells_by_completeness_and_marks_closed_sessions():
    rows = [
        CoverageRow(DAY, "ASX", expected=2, stored=2, failed=0, no_data=0),
        CoverageRow(DAY, "NASDAQ", expected=3, stored=1, failed=1, no_data=0),
        CoverageRow(DAY, "ARCA", expected=2, stored=1, failed=0, no_data=0),
        CoverageRow(DAY + dt.timedelta(days=6), "ASX", expected=2, stored=0, failed=0, no_data=2),
    ]
    html = pages.heatmap(rows, "/market-data")
    assert "class='complete'" in html and "data-exchange='ASX' data-date='2025-01-14'" in html
    assert "<td class='failed' title='NASDAQ 2025-01-14: 1 stored of 3 expected, 1 failed, 0 no data'" in html
    assert "<td class='partial' title='ARCA 2025-01-14" in html
    assert "title='NASDAQ does not trade 2025-01-20'" in html  # only ASX has that date
    assert html.count("<td class='complete'") == 2  # no data from IB counts as complete
    assert "<a href='/market-data/sessions/NASDAQ/2025-01-14'>1/3</a>" in html  # the session's page


def test_values_are_escaped_and_symbols_with_spaces_linked_quoted():
    assert pages._symbol_link("/market-data", "BRK A") == (
        "<td><a href='/market-data/symbols/BRK%20A'>BRK A</a></td>"
    )
    assert (
        pages._symbol_link("", "AAPL", DAY) == "<td><a href='/symbols/AAPL?session=2025-01-14'>AAPL</a></td>"
    )
    assert pages._cell("<script>'x'</script>") == "<td>&lt;script&gt;&#x27;x&#x27;&lt;/script&gt;</td>"
    assert pages._cell(decimal.Decimal("30.55000000"), numeric=True) == "<td class='num'>30.55</td>"
