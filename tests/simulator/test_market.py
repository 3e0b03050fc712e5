"""The market model: deterministic, valid bars on each exchange's real sessions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from ibkr_market_data import calendars
from ibkr_market_data_dev.simulated_ib import shipped_listings
from tws_simulator.market import LISTING_DATES, MarketModel, NoSuchSession
from tws_simulator.server import shared_model


@pytest.fixture(scope="module")
def model() -> MarketModel:
    return shared_model(shipped_listings(), 42)


def test_the_model_serves_the_project_universe(model: MarketModel) -> None:
    from ibkr_market_data.universe import load_universe

    universe = load_universe()
    assert [(c.symbol, c.con_id) for c in model.contracts] == [(u.symbol, u.con_id) for u in universe]
    assert model.contract("BHP").currency == "AUD"
    assert model.contract("BHP").time_zone_id == "Australia/NSW"
    assert model.contract("AAPL").time_zone_id == "US/Eastern"


def test_same_seed_symbol_and_session_give_the_same_bar_whatever_the_range(model: MarketModel) -> None:
    fresh = MarketModel(shipped_listings(), 42)
    single = fresh.daily_bar("CBA", dt.date(2025, 3, 14))
    in_range = {bar.date: bar for bar in model.daily_bars("CBA", dt.date(2025, 1, 1), dt.date(2025, 6, 30))}
    assert in_range[dt.date(2025, 3, 14)] == single


def test_another_seed_gives_other_prices(model: MarketModel) -> None:
    day = dt.date(2025, 3, 14)
    assert MarketModel(shipped_listings(), 7).daily_bar("CBA", day).close != model.daily_bar("CBA", day).close


def test_bars_are_valid_ohlc_with_fixed_decimal_places(model: MarketModel) -> None:
    for contract in model.contracts:
        for bar in model.daily_bars(contract.symbol, dt.date(2024, 6, 1), dt.date(2025, 6, 30)):
            assert Decimal(0) < bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
            assert bar.low <= bar.wap <= bar.high
            assert bar.volume > 0 and bar.bar_count > 0
            assert {-p.as_tuple().exponent for p in (bar.open, bar.high, bar.low, bar.close)} == {
                contract.decimals
            }


def test_the_universe_carries_values_that_break_naive_schemas(model: MarketModel) -> None:
    years = (dt.date(2005, 1, 1), dt.date(2025, 6, 30))
    assert min(bar.low for bar in model.daily_bars("BRK A", *years)) > 500_000
    assert model.contract("BRK A").primary_exchange == "NYSE"
    assert max(bar.high for bar in model.daily_bars("GGP", *years)) < Decimal("0.01")
    assert model.contract("GGP").currency == "AUD" and model.contract("GGP").decimals == 4
    assert min(bar.volume for bar in model.daily_bars("SQQQ", *years)) > 2**31


def test_sessions_follow_each_exchanges_calendar(model: MarketModel) -> None:
    january = (dt.date(2025, 1, 1), dt.date(2025, 1, 31))
    assert model.sessions("BHP", *january) == calendars.sessions_between("ASX", *january)
    assert model.sessions("AAPL", *january) == calendars.sessions_between("NASDAQ", *january)
    australia_day, mlk_day = dt.date(2025, 1, 27), dt.date(2025, 1, 20)
    assert australia_day not in model.sessions("BHP", *january) and australia_day in model.sessions(
        "AAPL", *january
    )
    assert mlk_day in model.sessions("BHP", *january) and mlk_day not in model.sessions("AAPL", *january)
    with pytest.raises(NoSuchSession):
        model.daily_bar("BHP", australia_day)


def test_recently_listed_symbols_have_no_bars_before_their_listing(model: MarketModel) -> None:
    listed = LISTING_DATES["GYG"]
    assert listed == dt.date(2025, 6, 16) and model.listing_date("GYG") == listed
    bars = model.daily_bars("GYG", dt.date(2025, 6, 1), dt.date(2025, 6, 30))
    assert bars[0].date == listed
    assert [bar.date for bar in bars] == calendars.sessions_between("ASX", listed, dt.date(2025, 6, 30))
    with pytest.raises(NoSuchSession):
        model.daily_bar("GYG", dt.date(2025, 6, 13))


def test_intraday_bars_stay_within_the_daily_range(model: MarketModel) -> None:
    day = dt.date(2025, 6, 27)
    daily = model.daily_bar("AAPL", day)
    bars = model.intraday_bars("AAPL", day, 1800, True)
    assert len(bars) == 13  # 09:30-16:00 New York in half hours
    assert bars[0].date == calendars.session_open("NASDAQ", day)
    assert all(daily.low <= bar.low <= bar.high <= daily.high and bar.is_valid for bar in bars)
    extended = model.intraday_bars("AAPL", day, 1800, False)
    assert len(extended) == 32  # 04:00-20:00
