import datetime as dt

import pytest

from ibkr_market_data.errors import InvalidRunParamError
from ibkr_market_data.run_dates import check_trading_date, parse_date_param, resolve_trading_date

NOW = dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC)
EXCHANGES = ["ASX", "NASDAQ"]


@pytest.mark.parametrize("value", ["2025/01/15", "15-01-2025", "2025-1-5", "yesterday", "2025-02-30"])
def test_malformed_date_names_the_param_and_format(value):
    with pytest.raises(InvalidRunParamError, match=r"'date'.*(YYYY-MM-DD|valid calendar date)"):
        parse_date_param(value)


def test_empty_date_means_no_param():
    assert parse_date_param(None) is None
    assert parse_date_param("") is None
    assert parse_date_param("2025-01-15") == dt.date(2025, 1, 15)


def test_param_wins_over_logical_date():
    assert resolve_trading_date(
        date_param="2025-01-15", run_type="manual", logical_date=NOW, run_after=NOW, exchanges=EXCHANGES
    ) == dt.date(2025, 1, 15)


def test_scheduled_run_collects_its_logical_date():
    logical = dt.datetime(2025, 1, 20, tzinfo=dt.UTC)
    assert resolve_trading_date(
        date_param=None, run_type="scheduled", logical_date=logical, run_after=NOW, exchanges=EXCHANGES
    ) == dt.date(2025, 1, 20)


def test_manual_run_without_date_takes_latest_completed_session():
    # Monday 30 June 2025 12:00 UTC: ASX closed Monday, NASDAQ has not yet: Friday 27 June.
    assert resolve_trading_date(
        date_param=None, run_type="manual", logical_date=None, run_after=NOW, exchanges=EXCHANGES
    ) == dt.date(2025, 6, 27)


def test_manual_run_without_date_follows_the_timetable_s_close_plus_delay_rule():
    # NASDAQ closed Monday 30 June 2025 at 20:00 UTC. Ten minutes later the schedule has not run
    # that date yet (30 minutes' delay), so a manual run collects Friday; forty minutes later, Monday.
    delay = dt.timedelta(minutes=30)
    for minutes, expected in ((10, dt.date(2025, 6, 27)), (40, dt.date(2025, 6, 30))):
        run_after = dt.datetime(2025, 6, 30, 20, minutes, tzinfo=dt.UTC)
        assert (
            resolve_trading_date(
                date_param=None,
                run_type="manual",
                logical_date=None,
                run_after=run_after,
                exchanges=EXCHANGES,
                delay=delay,
            )
            == expected
        )


def test_future_and_non_trading_dates_are_refused():
    with pytest.raises(InvalidRunParamError, match="in the future"):
        check_trading_date(dt.date(2025, 7, 15), EXCHANGES, NOW)
    with pytest.raises(InvalidRunParamError, match="not a trading day on ASX or NASDAQ"):
        check_trading_date(dt.date(2025, 6, 28), EXCHANGES, NOW)
    with pytest.raises(InvalidRunParamError, match="not a trading day"):
        check_trading_date(dt.date(2025, 12, 25), EXCHANGES, NOW.replace(year=2026))
    check_trading_date(dt.date(2025, 1, 27), EXCHANGES, NOW)  # Australia Day: NASDAQ trades
