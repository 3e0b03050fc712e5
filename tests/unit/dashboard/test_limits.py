"""The dashboard's limits: read from the environment, added to its connections' arguments (no database)."""

from __future__ import annotations

import logging

import pytest

from ibkr_market_data.dashboard.limits import DashboardLimits


def test_the_defaults_bound_every_request_and_leave_room_in_the_shared_pool():
    limits = DashboardLimits.from_env({})
    assert limits == DashboardLimits(
        max_requests=4, connect_timeout=3, statement_timeout=10.0, lock_timeout=1.0
    )
    assert limits.lock_timeout < limits.statement_timeout
    assert limits.max_requests < 40  # AnyIO's threads the API server shares with the heartbeats


def test_the_environment_sets_each_limit():
    limits = DashboardLimits.from_env(
        {
            "IBKR_DASHBOARD_MAX_REQUESTS": "8",
            "IBKR_DASHBOARD_CONNECT_TIMEOUT_SECONDS": "5",
            "IBKR_DASHBOARD_STATEMENT_TIMEOUT_SECONDS": "2.5",
            "IBKR_DASHBOARD_LOCK_TIMEOUT_SECONDS": " 0.25 ",
        }
    )
    assert limits == DashboardLimits(
        max_requests=8, connect_timeout=5, statement_timeout=2.5, lock_timeout=0.25
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IBKR_DASHBOARD_MAX_REQUESTS", "0"),
        ("IBKR_DASHBOARD_MAX_REQUESTS", "2.5"),
        ("IBKR_DASHBOARD_MAX_REQUESTS", "100"),
        ("IBKR_DASHBOARD_CONNECT_TIMEOUT_SECONDS", "1"),
        ("IBKR_DASHBOARD_STATEMENT_TIMEOUT_SECONDS", "ten"),
        ("IBKR_DASHBOARD_LOCK_TIMEOUT_SECONDS", "-1"),
        ("IBKR_DASHBOARD_LOCK_TIMEOUT_SECONDS", "nan"),
    ],
)
def test_a_bad_value_is_logged_and_its_default_kept(name, value, caplog):
    caplog.set_level(logging.WARNING)
    assert DashboardLimits.from_env({name: value}) == DashboardLimits()
    assert f"{name}={value!r}" in caplog.text


def test_the_connections_own_options_come_first_so_the_dashboards_win():
    args = DashboardLimits(connect_timeout=4, statement_timeout=2.5, lock_timeout=0.5).connect_args(
        {"host": "db", "options": "-c statement_timeout=60000 -c search_path=market", "connect_timeout": 30}
    )
    assert args == {
        "host": "db",
        "connect_timeout": 4,
        "options": "-c statement_timeout=60000 -c search_path=market -c statement_timeout=2500 "
        "-c lock_timeout=500 -c default_transaction_read_only=on",
    }
