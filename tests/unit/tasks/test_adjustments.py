"""The adjustments task's own checks: its params, and the zone that names an intraday bar's session."""

from __future__ import annotations

import pytest

from ibkr_market_data.errors import InvalidRunParamError
from ibkr_market_data.tasks.adjustments import exchange_zone, schedule_from


def test_max_symbols_caps_the_run_and_a_bad_one_is_refused_naming_it() -> None:
    assert schedule_from({}).max_symbols == 250
    assert schedule_from({"max_symbols": 3}).max_symbols == 3
    for bad in (0, -1, True, "10", 2.5):
        with pytest.raises(InvalidRunParamError, match="Param 'max_symbols' must be a whole number from 1"):
            schedule_from({"max_symbols": bad})


def test_an_exchange_without_a_calendar_names_sessions_in_utc(caplog) -> None:
    assert exchange_zone("ASX") == "Australia/Sydney"
    assert exchange_zone("TSE") == "UTC"
    assert "No trading calendar for TSE" in caplog.text
