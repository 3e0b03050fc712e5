"""When a run's share of no-data answers counts as unusual, and the settings that say so."""

from __future__ import annotations

import pytest

from ibkr_market_data.errors import InvalidQualitySettingError
from ibkr_market_data.no_data_alerts import NoDataRule, rule_from_env, unusual_shares
from ibkr_market_data.repository import NoDataShare

RULE = NoDataRule(share=0.2, min_targets=20)


def test_the_defaults_are_a_fifth_of_at_least_twenty_targets():
    assert rule_from_env({}) == RULE
    assert rule_from_env({"IBKR_NO_DATA_ALERT_SHARE": "0.5", "IBKR_NO_DATA_ALERT_MIN_TARGETS": " 3 "}) == (
        NoDataRule(0.5, 3)
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IBKR_NO_DATA_ALERT_SHARE", "20%"),
        ("IBKR_NO_DATA_ALERT_SHARE", "0"),
        ("IBKR_NO_DATA_ALERT_SHARE", "1.5"),
        ("IBKR_NO_DATA_ALERT_MIN_TARGETS", "0"),
        ("IBKR_NO_DATA_ALERT_MIN_TARGETS", "ten"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_variable(name, value):
    with pytest.raises(InvalidQualitySettingError, match=f"^{name}={value!r}: give"):
        rule_from_env({name: value})


@pytest.mark.parametrize(
    ("no_data", "requested", "earlier", "unusual"),
    [
        (5, 25, [], True),  # 20 %, nothing to compare with: the threshold alone
        (4, 25, [], False),  # 16 %
        (19, 19, [], False),  # all of them, but fewer than 20 targets
        (10, 25, [0.3, 0.32, 0.35], False),  # 40 %: this universe's usual is 32 %
        (10, 25, [0.1, 0.2, 0.35], True),  # 40 %: twice the usual 20 %
        (9, 25, [0.1, 0.2, 0.35], False),  # 36 %: under twice the usual
        (13, 25, [0.4, 0.4, 1.0], True),  # 52 %: at least half alerts whatever the usual
        (25, 25, [1.0, 1.0], True),  # a farm broken for weeks stays news
    ],
)
def test_a_share_is_unusual_above_the_threshold_and_twice_the_usual(no_data, requested, earlier, unusual):
    found = unusual_shares([NoDataShare("ALL", no_data, requested)], {"ALL": earlier}, RULE)
    assert bool(found) is unusual


def test_each_exchange_is_held_against_its_own_history():
    shares = [NoDataShare("ALL", 22, 100), NoDataShare("ASX", 22, 22), NoDataShare("NASDAQ", 0, 78)]
    found = unusual_shares(shares, {"ALL": [0.1], "ASX": [0.0], "NASDAQ": [0.0]}, RULE)
    assert [(item.exchange, item.usual) for item in found] == [("ALL", 0.1), ("ASX", 0.0)]


def test_a_bad_setting_fails_the_runs_first_check_naming_it(monkeypatch):
    from ibkr_market_data.errors import InvalidRunParamError
    from ibkr_market_data.tasks.params import check_quality_settings

    monkeypatch.setenv("IBKR_NO_DATA_ALERT_SHARE", "lots")
    with pytest.raises(InvalidRunParamError, match="^IBKR_NO_DATA_ALERT_SHARE='lots': give a share"):
        check_quality_settings()
    monkeypatch.setenv("IBKR_NO_DATA_ALERT_SHARE", "0.3")
    check_quality_settings()
