"""Universe CSV rows: any row of the right shape loads.

A short or malformed row is refused with file:line and the column, never a raw AttributeError.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibkr_market_data.universe import COLUMNS, load_universe, load_universe_files

HEADER = ",".join(COLUMNS)
GOOD_ROW = "AAPL,STK,SMART,NASDAQ,USD,265598,1,equity,Apple Inc"
PROPERTY_SETTINGS = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "custom.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_shipped_universe_loads():
    assert len(load_universe()) == 320


def test_a_good_row_loads_from_a_file_path(tmp_path):
    [entry] = load_universe_files([_write(tmp_path, HEADER, GOOD_ROW)])
    assert (entry.symbol, entry.con_id, entry.priority, entry.source_list) == ("AAPL", 265598, 1, "custom")


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ("AAPL,STK,SMART,NASDAQ,USD,265598,1,equity", "name"),
        ("AAPL,STK,SMART", "primary_exchange"),
        ("AAPL", "sec_type"),
        ("AAPL,STK,SMART,NASDAQ,USD,,1,equity,Apple", "con_id"),
        (",STK,SMART,NASDAQ,USD,265598,1,equity,Apple", "symbol"),
        ("AAPL,STK,SMART,NASDAQ,USD,abc,1,equity,Apple", "con_id"),
        ("AAPL,STK,SMART,NASDAQ,USD,265598,0,equity,Apple", "priority"),
        ("AAPL,STK,SMART,NASDAQ,USD,265598,99999,equity,Apple", "priority"),
        ("AAPL,STK,SMART,NASDAQ,USD,99999999999999999999,1,equity,Apple", "con_id"),
        ("AAPL,STK,SMART,NASDAQ,US,265598,1,equity,Apple", "currency"),
        ("A" * 33 + ",STK,SMART,NASDAQ,USD,265598,1,equity,Apple", "symbol"),
        ("AAPL,STK,SMART,NASDAQ-GLOBAL-SELECT,USD,265598,1,equity,Apple", "primary_exchange"),
        ("XRO,STK,ASX,CHIXAU,AUD,700000002,2,equity,Xero", "primary_exchange"),
    ],
)
def test_a_short_or_bad_row_names_file_line_and_column(tmp_path, row, column):
    path = _write(tmp_path, HEADER, GOOD_ROW, row)
    with pytest.raises(ValueError, match=rf"^custom\.csv:3: column '{column}'"):
        load_universe_files([path])


def test_a_primary_exchange_without_a_calendar_is_refused_at_load_naming_the_known_ones(tmp_path):
    path = _write(tmp_path, HEADER, GOOD_ROW, "XRO,STK,ASX,CHIXAU,AUD,700000002,2,equity,Xero")
    with pytest.raises(ValueError) as raised:
        load_universe_files([path])
    assert str(raised.value) == (
        "custom.csv:3: column 'primary_exchange': No trading calendar for exchange 'CHIXAU'; "
        "known: AMEX, ARCA, ASX, BATS, NASDAQ, NYSE"
    )


def test_a_header_without_a_column_is_named(tmp_path):
    path = _write(tmp_path, "symbol,sec_type", "AAPL,STK")
    with pytest.raises(ValueError, match=r"^custom\.csv:1: the header lacks column\(s\) exchange, "):
        load_universe_files([path])


def test_a_row_with_extra_fields_is_refused(tmp_path):
    path = _write(tmp_path, HEADER, GOOD_ROW + ",surplus")
    with pytest.raises(ValueError, match=r"^custom\.csv:2: the row has more fields"):
        load_universe_files([path])


_field = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@PROPERTY_SETTINGS
@given(fields=st.lists(_field, min_size=0, max_size=12))
def test_any_row_loads_or_is_refused_naming_its_line(tmp_path, fields):
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerow(fields)
    path = tmp_path / "hostile.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        entries = load_universe_files([path])
    except ValueError as exc:
        assert str(exc).startswith("hostile.csv:"), exc
        assert "column" in str(exc) or "fields" in str(exc), exc
    else:
        for entry in entries:
            assert entry.symbol and entry.con_id >= 1 and entry.priority >= 1
            assert "\x00" not in entry.symbol


@PROPERTY_SETTINGS
@given(
    symbol=st.text(alphabet=string.ascii_uppercase + " .", min_size=1, max_size=10).filter(str.strip),
    con_id=st.integers(min_value=1, max_value=2**31 - 1),
    priority=st.integers(min_value=1, max_value=9),
)
def test_well_formed_rows_load_as_written(tmp_path, symbol, con_id, priority):
    path = _write(tmp_path, HEADER, f"{symbol},STK,SMART,NASDAQ,USD,{con_id},{priority},equity,Name")
    [entry] = load_universe_files([path])
    assert (entry.symbol, entry.con_id, entry.priority) == (symbol.strip(), con_id, priority)


def test_a_unicode_line_separator_inside_a_value_stays_in_the_value(tmp_path):
    [entry] = load_universe_files(
        [_write(tmp_path, HEADER, GOOD_ROW.replace("Apple Inc", "Apple\x85\u2028Inc"))]
    )
    assert entry.name == "Apple\x85\u2028Inc"


# -- membership periods (optional ``from`` / ``to``) ----------------------------------------------

PERIOD_HEADER = HEADER + ",from,to"


def test_a_membership_period_loads_and_an_empty_end_stays_open(tmp_path):
    import datetime as dt

    path = _write(tmp_path, PERIOD_HEADER, GOOD_ROW + ",2025-03-24,", GOOD_ROW.replace("AAPL", "MSFT") + ",,")
    aapl, msft = load_universe_files([path])
    assert (aapl.valid_from, aapl.valid_to) == (dt.date(2025, 3, 24), None)
    assert (msft.valid_from, msft.valid_to) == (None, None)
    [membership] = aapl.memberships
    assert membership.covers(dt.date(2025, 3, 24)) and not membership.covers(dt.date(2025, 3, 21))


def test_a_row_whose_to_is_before_its_from_is_refused_naming_file_and_line(tmp_path):
    path = _write(
        tmp_path, PERIOD_HEADER, GOOD_ROW + ",,", GOOD_ROW.replace("AAPL", "MSFT") + ",2025-06-01,2025-05-31"
    )
    with pytest.raises(ValueError) as raised:
        load_universe_files([path])
    assert str(raised.value) == (
        "custom.csv:3: column 'to' (2025-05-31) is before column 'from' (2025-06-01); "
        "the membership period must run forward"
    )


@pytest.mark.parametrize(("cells", "column"), [("2025-13-01,", "from"), (",31/05/2025", "to")])
def test_a_period_date_that_is_no_date_is_refused_naming_the_column(tmp_path, cells, column):
    path = _write(tmp_path, PERIOD_HEADER, GOOD_ROW + "," + cells)
    with pytest.raises(
        ValueError, match=rf"^custom\.csv:2: column '{column}' is '.*', not a date YYYY-MM-DD$"
    ):
        load_universe_files([path])


def test_an_unknown_header_column_is_refused_so_a_misspelt_period_is_not_ignored(tmp_path):
    path = _write(tmp_path, HEADER + ",form", GOOD_ROW + ",2025-01-01")
    with pytest.raises(ValueError, match=r"^custom\.csv:1: the header has unknown column\(s\) form; known: "):
        load_universe_files([path])


def test_a_symbol_in_two_files_keeps_both_memberships(tmp_path):
    import datetime as dt

    first = tmp_path / "index_a.csv"
    second = tmp_path / "index_b.csv"
    first.write_text(f"{PERIOD_HEADER}\n{GOOD_ROW},2025-01-01,2025-03-31\n", encoding="utf-8")
    second.write_text(f"{PERIOD_HEADER}\n{GOOD_ROW},2025-06-01,\n", encoding="utf-8")
    [entry] = load_universe_files([first, second])
    assert [(m.source_list, m.valid_from, m.valid_to) for m in entry.memberships] == [
        ("index_a", dt.date(2025, 1, 1), dt.date(2025, 3, 31)),
        ("index_b", dt.date(2025, 6, 1), None),
    ]


def test_universe_errors_are_bad_input_so_the_cli_prints_one_error_line(tmp_path):
    from ibkr_market_data.errors import BadInputError

    path = _write(tmp_path, PERIOD_HEADER, GOOD_ROW + ",2025-06-01,2025-05-31")
    with pytest.raises(BadInputError):
        load_universe_files([path])
