"""Comparing what ib_insync received with what the market model says, field by field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from tws_simulator.market import SimBar


def assert_bars_equal(received: Sequence[Any], expected: Sequence[SimBar]) -> None:
    """Assert every ``BarData`` equals the model's bar: date, OHLC, volume, WAP and trade count."""
    assert len(received) == len(expected), f"{len(received)} bars received, {len(expected)} expected"
    for got, want in zip(received, expected, strict=True):
        if isinstance(want.date, dt.datetime):
            assert got.date == want.date  # aware datetimes compare across zones
        else:
            assert got.date == want.date and not isinstance(got.date, dt.datetime)
        assert (got.open, got.high, got.low, got.close) == (
            float(want.open),
            float(want.high),
            float(want.low),
            float(want.close),
        )
        assert (got.volume, got.average, got.barCount) == (want.volume, float(want.wap), want.bar_count)


def sessions_closing_between(exchange: str, after: dt.datetime, until: dt.datetime) -> list[dt.date]:
    """Sessions of ``exchange`` whose close lies in (after, until], read from the calendars directly."""
    from ibkr_market_data import calendars

    candidates = calendars.sessions_between(exchange, after.date() - dt.timedelta(days=1), until.date())
    return [day for day in candidates if after < calendars.session_close(exchange, day) <= until]
