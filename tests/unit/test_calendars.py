import datetime as dt
import os
import subprocess
import sys

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


@pytest.mark.parametrize("code", sorted(set(calendars.CALENDAR_CODES.values())))
def test_the_session_table_holds_exchange_calendars_sessions_opens_and_closes(code):
    exchange = next(name for name, value in calendars.CALENDAR_CODES.items() if value == code)
    calendar = calendars._calendar(code)
    first, last = dt.date(2024, 1, 1), dt.date(2026, 12, 31)
    sessions = [ts.date() for ts in calendar.sessions_in_range(first.isoformat(), last.isoformat())]
    assert calendars.sessions_between(exchange, first, last) == sessions
    assert calendars.time_zone(exchange) == str(calendar.tz)
    for day in sessions:
        assert calendars.session_open(exchange, day) == calendar.session_open(day.isoformat())
        assert calendars.session_close(exchange, day) == calendar.session_close(day.isoformat())
    assert calendars.previous_session(exchange, sessions[1]) == sessions[0]
    assert calendars.previous_session(exchange, calendars.CALENDAR_START) is None
    with pytest.raises(ValueError, match="not a session"):
        calendars.session_close(exchange, dt.date(2025, 12, 25))


READ_IN_A_NEW_PROCESS = """
import datetime as dt, sys
from ibkr_market_data import calendars
close = calendars.session_close("NASDAQ", dt.date(2025, 12, 24))
print(close.isoformat(), "exchange_calendars" in sys.modules, "pandas" in sys.modules)
"""


def test_a_later_process_reads_the_kept_sessions_without_importing_exchange_calendars(tmp_path):
    """The first process builds a calendar's sessions (~1 CPU-s) and keeps them; the next reads them."""
    env = {**os.environ, calendars.CACHE_DIR_VARIABLE: str(tmp_path)}

    def new_process() -> str:
        command = [sys.executable, "-c", READ_IN_A_NEW_PROCESS]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.split()

    assert new_process() == ["2025-12-24T18:00:00+00:00", "True", "True"], "the first one builds"
    assert (tmp_path / "calendar-XNAS.json").exists()
    assert new_process() == ["2025-12-24T18:00:00+00:00", "False", "False"], "the next one reads"
    (tmp_path / "calendar-XNAS.json").write_text("{not json")
    assert new_process() == ["2025-12-24T18:00:00+00:00", "True", "True"], "a broken file is built again"
