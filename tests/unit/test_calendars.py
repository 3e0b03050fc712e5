import datetime as dt

import pytest

from ibkr_market_data import calendars
from ibkr_market_data.errors import UnknownExchangeError


def test_asx_and_us_holidays_differ():
    australia_day = dt.date(2025, 1, 27)
    mlk_day = dt.date(2025, 1, 20)
    assert not calendars.is_session("ASX", australia_day)
    assert calendars.is_session("NASDAQ", australia_day)
    assert calendars.is_session("ASX", mlk_day)
    assert not calendars.is_session("NASDAQ", mlk_day)
    assert not calendars.is_session("NYSE", mlk_day)


def test_sessions_between_skips_weekends_and_holidays():
    sessions = calendars.sessions_between("NASDAQ", dt.date(2025, 12, 22), dt.date(2025, 12, 28))
    assert sessions == [
        dt.date(2025, 12, 22),
        dt.date(2025, 12, 23),
        dt.date(2025, 12, 24),
        dt.date(2025, 12, 26),
    ]
    assert calendars.sessions_between("ASX", dt.date(2025, 1, 10), dt.date(2025, 1, 9)) == []


def test_session_close_is_in_exchange_time_zone():
    # 16:00 Sydney (AEDT, UTC+11) and 16:00 New York (EST, UTC-5); 24 Dec is an early close in the US.
    assert calendars.session_close("ASX", dt.date(2025, 1, 15)) == dt.datetime(2025, 1, 15, 5, tzinfo=dt.UTC)
    assert calendars.session_close("NASDAQ", dt.date(2025, 1, 15)) == dt.datetime(
        2025, 1, 15, 21, tzinfo=dt.UTC
    )
    assert calendars.session_close("NASDAQ", dt.date(2025, 12, 24)) == dt.datetime(
        2025, 12, 24, 18, tzinfo=dt.UTC
    )


def test_latest_completed_trading_date_waits_for_every_exchange_trading_it():
    # Wednesday 10:00 UTC: ASX has closed Wednesday, New York has not.
    as_of = dt.datetime(2025, 1, 15, 10, tzinfo=dt.UTC)
    assert calendars.latest_completed_trading_date(["ASX", "NASDAQ"], as_of) == dt.date(2025, 1, 14)
    assert calendars.latest_completed_trading_date(["ASX"], as_of) == dt.date(2025, 1, 15)
    # Monday 20 Jan 2025 is MLK day: only ASX trades, so it completes at the ASX close.
    assert calendars.latest_completed_trading_date(
        ["ASX", "NASDAQ"], dt.datetime(2025, 1, 20, 6, tzinfo=dt.UTC)
    ) == dt.date(2025, 1, 20)


def test_unknown_exchange_is_a_clear_error():
    with pytest.raises(UnknownExchangeError, match="LSE"):
        calendars.is_session("LSE", dt.date(2025, 1, 15))
