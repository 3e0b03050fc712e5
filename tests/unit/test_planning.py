"""The daily plan: which symbols to request for one trading date, and why the others are skipped."""

import datetime as dt

from ibkr_market_data.planning import ALREADY_COLLECTED, plan_daily
from ibkr_market_data.repository import SymbolRow

AAPL = SymbolRow(1, "AAPL", "SMART", "NASDAQ", "USD", "STK", 265598, 1, True)
BHP = SymbolRow(2, "BHP", "ASX", "ASX", "AUD", "STK", 4036812, 1, True)
CBA = SymbolRow(3, "CBA", "ASX", "ASX", "AUD", "STK", 4036818, 1, True)
#: Listed on ASX, but IB names a primary exchange we have no calendar for.
ON_CHIXAU = SymbolRow(4, "XRO", "ASX", "CHIXAU", "AUD", "STK", 700000002, 2, True)

DAY = dt.date(2025, 1, 15)
NOW = dt.datetime(2025, 1, 16, 12, tzinfo=dt.UTC)


def test_a_symbol_on_an_exchange_without_a_calendar_is_skipped_and_the_others_are_planned():
    plan = plan_daily(DAY, [AAPL, ON_CHIXAU, BHP, CBA], already_collected=[CBA.id], now=NOW)

    assert [target.symbol for target in plan.targets] == ["AAPL", "BHP"]
    assert [(skip.symbol, skip.reason) for skip in plan.skips] == [
        ("XRO", "No trading calendar for exchange 'CHIXAU'; known: AMEX, ARCA, ASX, BATS, NASDAQ, NYSE"),
        ("CBA", ALREADY_COLLECTED),
    ]


def test_a_holiday_and_an_open_session_are_skipped_with_their_exchange():
    mlk_day = dt.date(2025, 1, 20)
    plan = plan_daily(
        mlk_day, [AAPL, BHP], already_collected=[], now=dt.datetime(2025, 1, 20, 3, tzinfo=dt.UTC)
    )

    assert plan.targets == []
    assert [(skip.symbol, skip.reason) for skip in plan.skips] == [
        ("AAPL", "not a trading day on NASDAQ"),
        ("BHP", "session not closed yet on ASX"),
    ]
