"""derived: 5min/1hour bars built from 1-minute bars, their settings and the cross-check's sample."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from ibkr_market_data import derived
from ibkr_market_data.bars import Bar
from ibkr_market_data.errors import InvalidRunParamError, UnknownTimeframeError
from ibkr_market_data.tasks.params import selected_timeframe
from ibkr_market_data.timeframes import DAILY, FIVE_MINUTES, HOURLY

NEW_YORK = "America/New_York"
OPEN = dt.datetime(2025, 6, 25, 13, 30)  # 09:30 New York, in UTC


def minute(at: dt.datetime, price: str, volume: int, wap: str | None = None, trades: int = 3) -> Bar:
    value = Decimal(price)
    return Bar(at, value, value + 1, value - 1, value, volume, Decimal(wap or price), trades)


def test_bars_are_cut_on_multiples_of_their_size_from_local_midnight() -> None:
    minutes = [minute(OPEN + dt.timedelta(minutes=offset), str(100 + offset), 10) for offset in range(90)]

    hours = derived.aggregate(minutes, HOURLY, NEW_YORK, OPEN)

    assert [bar.timestamp for bar in hours] == [OPEN, dt.datetime(2025, 6, 25, 14, 0)]  # 09:30, 10:00
    first, second = hours
    assert (first.open, first.close, first.high, first.low) == (100, 129, 130, 99)
    assert (first.volume, first.bar_count) == (300, 90)
    assert (second.open, second.close, second.volume) == (130, 189, 600)


def test_wap_is_weighted_by_volume_and_a_period_without_a_trade_has_no_bar() -> None:
    minutes = [
        minute(OPEN, "10", 100, wap="10.00"),
        minute(OPEN + dt.timedelta(minutes=1), "11", 300, wap="11.00"),
        # 09:35-09:39 without a trade, then 09:40
        minute(OPEN + dt.timedelta(minutes=10), "12", 7, wap="12.345678901"),
    ]

    bars = derived.aggregate(minutes, FIVE_MINUTES, NEW_YORK, OPEN)

    assert [bar.timestamp for bar in bars] == [OPEN, OPEN + dt.timedelta(minutes=10)]
    assert bars[0].wap == Decimal("10.75")  # (10 * 100 + 11 * 300) / 400, not the mean 10.5
    assert bars[1].wap == Decimal("12.34567890")  # NUMERIC(20,8), rounded half up


def test_the_first_bar_starts_at_the_open_when_its_first_minutes_did_not_trade() -> None:
    minutes = [
        minute(OPEN + dt.timedelta(minutes=3), "10", 5),
        minute(OPEN + dt.timedelta(minutes=40), "11", 5),
    ]

    hours = derived.aggregate(minutes, HOURLY, NEW_YORK, OPEN)

    assert [bar.timestamp for bar in hours] == [OPEN, dt.datetime(2025, 6, 25, 14, 0)]


def test_a_session_is_cut_from_midnight_in_its_exchange_s_zone() -> None:
    """Adelaide is 9.5 hours ahead of UTC: its hours start on the half hour in UTC."""
    adelaide_open = dt.datetime(2025, 6, 25, 0, 30)  # 10:00 in Adelaide
    minutes = [minute(adelaide_open + dt.timedelta(minutes=offset), "5", 1) for offset in range(0, 120, 7)]

    hours = derived.aggregate(minutes, HOURLY, "Australia/Adelaide", adelaide_open)

    assert [bar.timestamp for bar in hours] == [adelaide_open, adelaide_open + dt.timedelta(hours=1)]


def test_daily_bars_are_not_built_from_minutes() -> None:
    with pytest.raises(ValueError, match="1day"):
        derived.aggregate([], DAILY, NEW_YORK, OPEN)


def test_disagreement_names_what_differs_and_agreement_is_none() -> None:
    built = derived.aggregate([minute(OPEN, "10", 100)], FIVE_MINUTES, NEW_YORK, OPEN)
    assert derived.disagreement(built, built) is None
    fewer = [Bar(OPEN, Decimal(10), Decimal(11), Decimal(9), Decimal(10), 99, Decimal(10), 1)]
    assert (
        derived.disagreement(built, fewer) == "volume differs in 1 bars (first 13:30 UTC: IB 99, built 100)"
    )
    assert "1 built bars IB lacks" in (derived.disagreement(built, []) or "")


def test_settings_default_to_building_with_a_five_percent_cross_check() -> None:
    settings = derived.settings_from_env({})
    assert settings.enabled and settings.cross_check_percent == 5
    assert not derived.settings_from_env({"IBKR_DERIVE_INTRADAY": "off"}).enabled
    assert derived.settings_from_env(
        {"IBKR_DERIVE_CROSS_CHECK_PERCENT": "12.5%"}
    ).cross_check_percent == Decimal("12.5")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IBKR_DERIVE_INTRADAY", "maybe"),
        ("IBKR_DERIVE_CROSS_CHECK_PERCENT", "101"),
        ("IBKR_DERIVE_CROSS_CHECK_PERCENT", "-1"),
        ("IBKR_DERIVE_CROSS_CHECK_PERCENT", "five"),
        ("IBKR_DERIVE_CROSS_CHECK_PERCENT", "nan"),
    ],
)
def test_a_bad_setting_fails_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(UnknownTimeframeError, match=variable):
        derived.settings_from_env({variable: value})


def test_a_bad_setting_fails_the_run_first_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBKR_DERIVE_CROSS_CHECK_PERCENT", "200")
    with pytest.raises(InvalidRunParamError, match="IBKR_DERIVE_CROSS_CHECK_PERCENT"):
        selected_timeframe({})
    assert selected_timeframe({"timeframe": "5min"}) == FIVE_MINUTES  # one timeframe: nothing derived


def test_the_cross_check_samples_its_share_the_same_way_every_time() -> None:
    sessions = [dt.date(2024, 1, 1) + dt.timedelta(days=day) for day in range(100)]
    keys = [(f"S{number}", session) for number in range(100) for session in sessions]
    five = derived.DeriveSettings(cross_check_percent=Decimal(5))

    sampled = [key for key in keys if five.asks_ib(*key)]

    assert 400 <= len(sampled) <= 600  # 5 % of 10,000
    assert sampled == [key for key in keys if five.asks_ib(*key)]
    assert not any(derived.DeriveSettings(cross_check_percent=Decimal(0)).asks_ib(*key) for key in keys)
    assert all(derived.DeriveSettings(cross_check_percent=Decimal(100)).asks_ib(*key) for key in keys)
