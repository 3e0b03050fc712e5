"""IB's bars turned into ours: exact decimals, UTC times, broken bars named, repeats dropped."""

import datetime as dt
import math
from decimal import Decimal
from types import SimpleNamespace

import pytest

from ibkr_market_data.bars import Bar, bar_from_ib, bars_from_ib, latest_per_timestamp, validate_bar
from ibkr_market_data.errors import BrokenBarsError, InvalidBarError


def ib_bar(**overrides):
    fields = dict(
        date=dt.date(2025, 1, 15),
        open=10.5,
        high=11.25,
        low=10.0,
        close=11.0,
        volume=1234.0,
        average=10.8,
        barCount=42,
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_prices_become_exact_decimals():
    bar = bar_from_ib(ib_bar(open=654321.12, high=700000.5, low=600000.01, close=650000.0))
    assert bar.open == Decimal("654321.12")
    assert bar.low == Decimal("600000.01")
    penny = bar_from_ib(ib_bar(open=0.0005, high=0.0007, low=0.0004, close=0.0006, volume=3.5e9))
    assert penny.low == Decimal("0.0004")
    assert penny.volume == 3_500_000_000
    assert bar.timestamp == dt.datetime(2025, 1, 15)


def test_intraday_times_are_stored_as_utc():
    sydney = dt.timezone(dt.timedelta(hours=11))
    bar = bar_from_ib(ib_bar(date=dt.datetime(2025, 1, 15, 10, 0, tzinfo=sydney)))
    assert bar.timestamp == dt.datetime(2025, 1, 14, 23, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"high": 9.0}, "high 9.0 is below low 10.0"),
        ({"volume": -5.0}, "volume -5 is negative"),
        ({"close": math.nan}, "close is nan"),
        ({"low": 0.0, "open": 0.0}, "not a positive price"),
        ({"open": 12.0}, "open 12.0 is outside low..high"),
        ({"close": 9.5}, "close 9.5 is outside low..high"),
        ({"close": 11.5}, "close 11.5 is outside low..high"),
        ({"open": 9.0, "low": 9.5}, "open 9.0 is outside low..high"),
    ],
)
def test_a_broken_bar_is_named_and_the_good_ones_are_handed_back(overrides, message):
    good = ib_bar(date=dt.date(2025, 1, 14))
    with pytest.raises(BrokenBarsError, match=message) as raised:
        bars_from_ib([good, ib_bar(**overrides)])
    assert isinstance(raised.value, InvalidBarError)
    assert raised.value.valid == [bar_from_ib(good)]
    assert len(raised.value.broken) == 1


@pytest.mark.parametrize("field", ["open", "high", "low", "close"])
def test_a_price_that_is_not_a_number_is_named_not_compared(field):
    prices = dict(open=Decimal("10.5"), high=Decimal("11"), low=Decimal("10"), close=Decimal("10.5"))
    bar = Bar(dt.datetime(2025, 1, 15), **{**prices, field: Decimal("NaN")}, volume=1, wap=None, bar_count=1)
    with pytest.raises(InvalidBarError, match=f"{field} NaN is not a positive price"):
        validate_bar(bar)


def test_a_time_sent_twice_keeps_its_last_bar_in_first_seen_order():
    monday, tuesday = dt.date(2025, 1, 13), dt.date(2025, 1, 14)
    first_monday = bar_from_ib(ib_bar(date=monday))
    bars = [first_monday, bar_from_ib(ib_bar(date=tuesday)), bar_from_ib(ib_bar(date=monday, close=10.25))]
    kept = latest_per_timestamp(bars)
    assert [bar.session_date for bar in kept] == [monday, tuesday]
    assert kept[0].close == Decimal("10.25")
    assert latest_per_timestamp(bars[:2]) == bars[:2]
