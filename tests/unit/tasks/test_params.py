"""The ``timeframe`` param: one timeframe for every selected symbol, or the configured ones."""

import pytest

from ibkr_market_data.errors import InvalidRunParamError
from ibkr_market_data.repository import SymbolRow
from ibkr_market_data.tasks.params import selected_timeframe, timeframes_of
from ibkr_market_data.timeframes import DAILY, FIVE_MINUTES, HOURLY, ONE_MINUTE

AAPL = SymbolRow(1, "AAPL", "SMART", "NASDAQ", "USD", "STK", 265598, 1, True)
GGP = SymbolRow(3, "GGP", "SMART", "ASX", "AUD", "STK", 4036999, 2, True)


def test_the_timeframe_param_picks_one_timeframe_for_every_selected_symbol(monkeypatch):
    monkeypatch.delenv("IBKR_INTRADAY_MAX_PRIORITY", raising=False)
    assert selected_timeframe({"timeframe": "5min"}) == FIVE_MINUTES
    assert timeframes_of([AAPL, GGP], FIVE_MINUTES) == {FIVE_MINUTES: [AAPL, GGP]}
    assert selected_timeframe({}) is None
    assert timeframes_of([AAPL, GGP], None) == {
        DAILY: [AAPL, GGP],
        HOURLY: [AAPL],
        FIVE_MINUTES: [AAPL],
        ONE_MINUTE: [AAPL],
    }
    with pytest.raises(InvalidRunParamError, match="Param 'timeframe': unknown timeframe '2min'"):
        selected_timeframe({"timeframe": "2min"})


def test_a_bad_timeframe_setting_fails_a_configured_run_naming_the_variable(monkeypatch):
    monkeypatch.setenv("IBKR_INTRADAY_TIMEFRAMES", "1min,10min")
    with pytest.raises(
        InvalidRunParamError, match=r"^IBKR_INTRADAY_TIMEFRAMES='1min,10min': unknown timeframe"
    ):
        selected_timeframe({"timeframe": "configured"})
    assert selected_timeframe({"timeframe": "1min"}) == ONE_MINUTE  # one timeframe reads no setting
