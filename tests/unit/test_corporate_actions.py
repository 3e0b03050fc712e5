"""Telling a split from corrections, dating it, and planning the re-fetch of history (pure)."""

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import pytest

from ibkr_market_data import calendars
from ibkr_market_data.corporate_actions import (
    CORPORATE_ACTION_KINDS,
    check_kind,
    first_session_after,
    plan_rebase,
    ratio_decimal,
    split_ratio,
)
from ibkr_market_data.errors import UnknownCorporateActionKindError
from ibkr_market_data.repository import BarRevision, SymbolRow
from ibkr_market_data.timeframes import DAILY, FIVE_MINUTES, ONE_MINUTE

AAPL = SymbolRow(1, "AAPL", "SMART", "NASDAQ", "USD", "STK", 265598, 1, True)
EIGHT_PLACES = Decimal("1e-8")


def adjusted(price: Decimal, ratio: Decimal) -> Decimal:
    """Return ``price`` on the new basis as IB serves it: divided, to 8 decimal places."""
    return (price / ratio).quantize(EIGHT_PLACES, rounding=ROUND_HALF_EVEN)


def revision(day: int, price: str, ratio: str, **changes: Decimal) -> BarRevision:
    close = Decimal(price)
    old = {"open": close - 1, "high": close + 2, "low": close - 2, "close": close}
    new = {name: adjusted(price, Decimal(ratio)) for name, price in old.items()} | changes
    return BarRevision(
        dt.datetime(2025, 6, day),
        old["open"],
        old["high"],
        old["low"],
        old["close"],
        1000,
        new["open"],
        new["high"],
        new["low"],
        new["close"],
        int(1000 * Decimal(ratio)),
    )


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        ("4", Fraction(4)),
        ("1.5", Fraction(3, 2)),
        ("0.1", Fraction(1, 10)),
        ("3", Fraction(3)),
        ("20", Fraction(20)),
    ],
)
def test_one_ratio_over_every_revised_bar_is_a_split(ratio, expected):
    revisions = [
        revision(day, close, ratio) for day, close in ((10, "201.37"), (11, "203.55"), (12, "2.0131"))
    ]
    assert split_ratio(revisions) == expected


def test_corrections_are_not_a_split():
    # A late correction changes one bar's close, another's volume: no one ratio explains them.
    corrected = revision(10, "201.37", "1", close=Decimal("201.12"))
    assert split_ratio([corrected]) is None
    assert split_ratio([revision(10, "201.37", "4"), revision(11, "203.55", "2")]) is None
    assert split_ratio([revision(10, "201.37", "4"), corrected]) is None
    assert split_ratio([]) is None


def test_a_busted_high_on_a_split_bar_still_reads_as_the_split():
    busted = revision(11, "203.55", "4", high=Decimal("52.9"))
    assert split_ratio([revision(10, "201.37", "4"), busted]) == 4


def test_prices_off_by_more_than_ibs_rounding_are_not_the_split():
    off = revision(10, "201.37", "4")
    nudged = BarRevision(**{**vars(off), "new_close": off.new_close + Decimal("0.0001")})
    assert split_ratio([revision(11, "203.55", "4"), nudged]) is None


def test_the_ratio_is_stored_to_ten_places():
    assert ratio_decimal(Fraction(4)) == Decimal("4.0000000000")
    assert ratio_decimal(Fraction(1, 3)) == Decimal("0.3333333333")


def test_a_change_is_dated_the_session_after_the_newest_bar_on_the_old_terms():
    friday = dt.date(2025, 6, 13)
    assert first_session_after("NASDAQ", friday, dt.date(2025, 6, 20)) == dt.date(2025, 6, 16)
    # Never later than the run's own date.
    assert first_session_after("NASDAQ", friday, friday) == friday


def test_unknown_kinds_are_refused_naming_the_value():
    assert check_kind("split") == "split"
    with pytest.raises(UnknownCorporateActionKindError) as raised:
        check_kind("merger")
    assert str(raised.value) == (
        "corporate-action kind 'merger' is unknown; "
        "known: split, dividend, delisting, con_id_change, ticker_change"
    )


def test_the_kinds_are_the_tables():
    import importlib

    migration = importlib.import_module("ibkr_market_data.migrations.versions.0008_corporate_actions")
    assert migration.KINDS == CORPORATE_ACTION_KINDS


def nasdaq(start: str, end: str) -> list[dt.date]:
    return calendars.sessions_between("NASDAQ", dt.date.fromisoformat(start), dt.date.fromisoformat(end))


def test_daily_history_is_fetched_again_in_one_request_per_contiguous_range():
    stored = nasdaq("2024-06-03", "2024-12-31") + nasdaq("2025-01-15", "2025-06-13")
    plan = plan_rebase(AAPL, DAILY, stored)
    assert len(plan.runs) == 2
    # 2024-06-03 + 365 days reaches 2025-06-02: IB's longest daily request cuts the second range.
    assert [(t.first_session_date, t.session_date, t.duration) for t in plan.targets] == [
        (dt.date(2024, 6, 3), dt.date(2025, 6, 2), "365 D"),
        (dt.date(2025, 6, 3), dt.date(2025, 6, 13), "11 D"),
    ]


def test_intraday_history_is_cut_at_ibs_longest_request_for_the_bar_size():
    five_minutes = plan_rebase(AAPL, FIVE_MINUTES, nasdaq("2025-05-05", "2025-05-16"))
    assert len(five_minutes.runs) == 1
    assert [(t.first_session_date, t.session_date) for t in five_minutes.targets] == [
        (dt.date(2025, 5, 5), dt.date(2025, 5, 9)),
        (dt.date(2025, 5, 12), dt.date(2025, 5, 16)),
    ]
    minutes = plan_rebase(AAPL, ONE_MINUTE, [dt.date(2025, 6, 2), dt.date(2025, 6, 3)])
    assert len(minutes.runs) == 1 and len(minutes.targets) == 2  # one day per 1-minute request
    assert plan_rebase(AAPL, DAILY, []).targets == ()


# -- the file of known actions -----------------------------------------------------------------

KNOWN_HEADER = "symbol,primary_exchange,kind,effective_session,ratio,amount,new_symbol,new_con_id,note"


def test_known_actions_are_read_and_checked():
    from ibkr_market_data.known_actions import parse_known_actions

    text = (
        f"{KNOWN_HEADER}\n"
        "AAPL,NASDAQ,split,2025-06-16,4,,,,announced 2025-05-01\n"
        "FB,NASDAQ,ticker_change,2022-06-09,,,META,,\n"
        "MSFT,nasdaq,con_id_change,2025-06-16,,,,987654321,\n"
    )
    split, rename, change = parse_known_actions("actions.csv", text)
    assert (split.where, split.kind, split.ratio, split.note) == (
        "actions.csv:2",
        "split",
        4,
        "announced 2025-05-01",
    )
    assert (rename.symbol, rename.new_symbol) == ("FB", "META")
    assert (change.primary_exchange, change.new_con_id) == ("NASDAQ", 987654321)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "AAPL,NASDAQ,merger,2025-06-16,,,,,",
            "actions.csv:3: column 'kind': corporate-action kind 'merger' is unknown; "
            "known: split, dividend, delisting, con_id_change, ticker_change",
        ),
        ("AAPL,NASDAQ,split,2025-06-16,,,,,", "actions.csv:3: a split needs column 'ratio'"),
        ("AAPL,NASDAQ,split,2025-06-16,1,,,,", "actions.csv:3: column 'ratio' is 1: a split changes"),
        ("AAPL,NASDAQ,split,16/06/2025,4,,,,", "actions.csv:3: column 'effective_session' is '16/06/2025'"),
        (
            "AAPL,NASDAQ,split,2025-06-16,-2,,,,",
            "actions.csv:3: column 'ratio' is '-2', not a number above 0",
        ),
        (
            "FB,NASDAQ,ticker_change,2022-06-09,,,,,",
            "actions.csv:3: a ticker_change needs column 'new_symbol'",
        ),
        (",NASDAQ,delisting,2025-06-16,,,,,", "actions.csv:3: column 'symbol' is empty"),
    ],
)
def test_a_bad_known_action_is_refused_naming_file_line_and_the_value(row, message):
    from ibkr_market_data.errors import BadInputError
    from ibkr_market_data.known_actions import parse_known_actions

    text = f"{KNOWN_HEADER}\nMSFT,NASDAQ,delisting,2025-06-16,,,,,\n{row}\n"
    with pytest.raises(BadInputError) as raised:
        parse_known_actions("actions.csv", text)
    assert str(raised.value).startswith(message)


def test_known_actions_come_from_the_file_the_variable_names(tmp_path):
    from ibkr_market_data.errors import BadInputError
    from ibkr_market_data.known_actions import read_known_actions

    assert read_known_actions({}) == []
    path = tmp_path / "actions.csv"
    path.write_text(f"{KNOWN_HEADER}\nMSFT,NASDAQ,delisting,2025-06-16,,,,,\n", encoding="utf-8")
    [action] = read_known_actions({"IBKR_CORPORATE_ACTIONS_FILE": str(path)})
    assert action.kind == "delisting"
    with pytest.raises(BadInputError, match=r"^IBKR_CORPORATE_ACTIONS_FILE=.*missing\.csv: No such file"):
        read_known_actions({"IBKR_CORPORATE_ACTIONS_FILE": str(tmp_path / "missing.csv")})
    path.write_text("symbol,kind\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"^actions\.csv:1: the header must have"):
        read_known_actions({"IBKR_CORPORATE_ACTIONS_FILE": str(path)})
