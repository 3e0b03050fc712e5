"""The data-quality checks on bars that have each defect, and on clean bars where none may fire."""

import dataclasses
import datetime as dt
import math
import random
from decimal import Decimal

import pytest

from ibkr_market_data.errors import InvalidQualitySettingError
from ibkr_market_data.quality import (
    Check,
    IntradaySession,
    QualityRules,
    Severity,
    StoredBar,
    SymbolData,
    check_symbol,
    parse_severities,
    rules_from_env,
)

START = dt.date(2025, 1, 1)


def walk(sessions: int = 60, seed: int = 7, daily_sigma: float = 0.02) -> list[StoredBar]:
    """Return a seeded random walk of closes with noisy volumes: clean data."""
    rng = random.Random(seed)
    price, bars = 100.0, []
    for offset in range(sessions):
        price *= math.exp(rng.gauss(0, daily_sigma))
        volume = int(1_000_000 * math.exp(rng.gauss(0, 0.4)))
        bars.append(StoredBar(START + dt.timedelta(days=offset), Decimal(f"{price:.2f}"), volume))
    return bars


def data(bars, expected=None, **extra) -> SymbolData:
    expected = [bar.session for bar in bars[-10:]] if expected is None else expected
    return SymbolData(symbol_id=1, symbol="AAPL", bars=bars, expected=expected, **extra)


def with_close(bars, position, factor):
    bars = list(bars)
    bars[position] = dataclasses.replace(bars[position], close=bars[position].close * Decimal(factor))
    return bars


@pytest.mark.parametrize("seed", range(20))
def test_clean_data_has_no_findings(seed):
    bars = walk(seed=seed, daily_sigma=0.03)
    assert check_symbol(data(bars, expected=[bar.session for bar in bars])) == []


def test_a_spike_is_found_on_its_session_only():
    bars = with_close(walk(), -3, 3)
    findings = check_symbol(data(bars))
    assert [(f.session, f.check, f.severity) for f in findings] == [
        (bars[-3].session, Check.SPIKE, Severity.ERROR)
    ]
    assert "x the previous close" in findings[0].detail and "outside the" in findings[0].detail


def test_a_drop_to_a_third_is_a_spike_too():
    bars = with_close(walk(), -1, Decimal(1) / 3)
    assert [f.check for f in check_symbol(data(bars))] == [Check.SPIKE]


def test_a_move_the_revised_history_shares_is_a_corporate_action_not_a_spike():
    """Report no spike on a 2:1 split that IB applied to its history.

    The run's lookback re-fetches the last five sessions (four revised by 0.5, the newest new); the
    older stored bars keep the old basis.
    """
    bars = walk()
    for position in range(-5, 0):
        bars = with_close(bars, position, Decimal("0.5"))
    revised = {bar.session: 0.5 for bar in bars[-5:-1]}
    expected = [bar.session for bar in bars[-5:]]
    assert check_symbol(data(bars, expected=expected, revision_ratios=revised)) == []
    unexplained = check_symbol(data(bars, expected=expected))
    assert [(f.session, f.check) for f in unexplained] == [(bars[-5].session, Check.SPIKE)]


def test_a_recorded_split_explains_the_step_of_history_not_yet_on_the_new_basis():
    """A 4:1 split recorded in ``corporate_actions``: the old-basis bars before it step down by 4."""
    bars = walk()
    for position in range(-3, 0):
        bars = with_close(bars, position, Decimal("0.25"))
    expected = [bar.session for bar in bars[-3:]]
    effective = bars[-3].session
    assert check_symbol(data(bars, expected=expected, split_factors={effective: 0.25})) == []
    # Another ratio, or a split outside the reference window, explains nothing.
    for factors in ({effective: 0.5}, {bars[-30].session: 0.25}):
        found = check_symbol(data(bars, expected=expected, split_factors=factors))
        assert [(f.session, f.check) for f in found] == [(effective, Check.SPIKE)]


def test_a_volatile_symbols_ordinary_move_is_not_a_spike():
    bars = with_close(walk(daily_sigma=0.08, seed=3), -1, Decimal("1.35"))
    assert check_symbol(data(bars)) == []


def test_too_little_history_checks_no_spike_or_volume():
    bars = with_close(walk(sessions=5), -1, 3)
    bars[-1] = dataclasses.replace(bars[-1], volume=bars[-1].volume * 100)
    assert check_symbol(data(bars)) == []


def test_stale_prices_are_found_once_where_the_stretch_reaches_its_length():
    bars = walk()
    frozen = bars[-6].close
    for position in range(-5, 0):
        bars[position] = dataclasses.replace(bars[position], close=frozen, volume=0)
    findings = check_symbol(data(bars))
    assert [(f.session, f.check) for f in findings] == [(bars[-3].session, Check.STALE_PRICE)]
    assert findings[0].severity is Severity.WARNING


def test_an_unchanged_close_with_volume_is_not_stale():
    bars = walk()
    for position in range(-5, 0):
        bars[position] = dataclasses.replace(bars[position], close=bars[-6].close)
    assert check_symbol(data(bars)) == []


@pytest.mark.parametrize(
    ("factor", "found"), [(100, True), (0.01, True), (10, False), (0.1, False), (1000, False)]
)
def test_volume_units_step(factor, found):
    bars = walk()
    bars[-1] = dataclasses.replace(bars[-1], volume=int(bars[-1].volume * factor))
    assert [f.check for f in check_symbol(data(bars))] == ([Check.VOLUME_UNITS] if found else [])


def test_missing_sessions_unless_ib_said_no_data():
    bars = walk()
    gone, empty = bars[-4].session, bars[-2].session
    kept = [bar for bar in bars if bar.session not in (gone, empty)]
    findings = check_symbol(data(kept, expected=[bar.session for bar in bars[-10:]], no_data=[empty]))
    assert [(f.session, f.check) for f in findings] == [(gone, Check.MISSING_SESSION)]


def test_only_the_expected_sessions_are_checked():
    bars = with_close(walk(), -15, 3)
    assert check_symbol(data(bars, expected=[bar.session for bar in bars[-10:]])) == []


def test_severities_are_configuration():
    rules = QualityRules(severities=parse_severities("spike=warning, volume_units=ignore"))
    bars = with_close(walk(), -2, 3)
    bars[-1] = dataclasses.replace(bars[-1], volume=bars[-1].volume * 100)
    assert [(f.check, f.severity) for f in check_symbol(data(bars), rules)] == [
        (Check.SPIKE, Severity.WARNING)
    ]
    assert rules_from_env({}).severities[Check.SPIKE] is Severity.ERROR
    assert (
        rules_from_env({"IBKR_QUALITY_SEVERITIES": "stale_price=error"}).severities[Check.STALE_PRICE]
        is Severity.ERROR
    )


@pytest.mark.parametrize(
    "text", ["spike", "spike=fatal", "spikes=error", "spike=error,=", "spike=error;stale_price=ignore"]
)
def test_a_bad_severity_setting_names_the_entry(text):
    with pytest.raises(InvalidQualitySettingError, match=r"IBKR_QUALITY_SEVERITIES entry '[^']*'"):
        parse_severities(text)


def minute_sessions(bars, volume_share=0.9, high_factor="1", bar_count=390):
    """Sum each bar's session up as its 1-minute bars would, IB-like: a little less volume than the day."""
    return {
        bar.session: IntradaySession(
            high=bar.high * Decimal(high_factor),
            low=bar.low,
            volume=int(bar.volume * volume_share),
            bars=bar_count,
            scheduled=390,
        )
        for bar in bars
    }


def with_range(bars):
    return [
        dataclasses.replace(bar, high=bar.close * Decimal("1.01"), low=bar.close * Decimal("0.99"))
        for bar in bars
    ]


def test_intraday_bars_that_agree_with_the_daily_bar_within_ibs_differences_raise_nothing():
    bars = with_range(walk())
    assert check_symbol(data(bars, intraday=minute_sessions(bars))) == []
    assert check_symbol(data(bars, intraday=minute_sessions(bars, volume_share=1.0))) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"volume_share": 0.3}, "1-minute volume"),
        ({"volume_share": 1.5}, "1-minute volume"),
        ({"high_factor": "1.05"}, "1-minute high"),
    ],
)
def test_intraday_bars_that_disagree_with_the_daily_bar_are_found(change, named):
    bars = with_range(walk())
    findings = check_symbol(data(bars, intraday=minute_sessions(bars, **change)))
    assert {finding.check for finding in findings} == {Check.INTRADAY_VS_DAILY}
    assert len(findings) == 10  # each checked session once
    assert all(named in finding.detail for finding in findings)
    assert all(finding.severity is Severity.WARNING for finding in findings)


def test_a_session_with_minutes_missing_is_not_compared_with_its_daily_bar_but_found_short():
    bars = with_range(walk())
    findings = check_symbol(data(bars, intraday=minute_sessions(bars, volume_share=0.3, bar_count=389)))
    assert {finding.check for finding in findings} == {Check.SHORT_SESSION}
    assert len(findings) == 10
    assert all("389 of 390 scheduled" in finding.detail for finding in findings)
    assert all("not settled: asked again" in finding.detail for finding in findings)


def test_a_short_session_ib_settled_is_compared_with_its_daily_bar_and_found_settled():
    bars = with_range(walk())
    settled = {
        day: dataclasses.replace(minutes, settled=True)
        for day, minutes in minute_sessions(bars, volume_share=0.3, bar_count=300).items()
    }
    findings = check_symbol(data(bars, intraday=settled))
    assert {finding.check for finding in findings} == {Check.SHORT_SESSION, Check.INTRADAY_VS_DAILY}
    short = [finding for finding in findings if finding.check is Check.SHORT_SESSION]
    assert all("settled complete" in finding.detail for finding in short)
    assert all(finding.severity is Severity.WARNING for finding in short)
