"""``make run`` keeps a configured auth manager: components apart (standalone forces the simple one)."""

from __future__ import annotations

import stat

from ibkr_market_data_dev import airflow_login
from ibkr_market_data_dev.airflow_stack import AirflowStack

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def test_a_configured_auth_manager_is_kept_and_its_components_start_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", FAB)  # as an operator configures make run
    stack = AirflowStack(tmp_path)
    assert stack.auth_manager == FAB
    assert stack.separate  # airflow standalone would replace it with the simple auth manager
    assert stack.environment()["AIRFLOW__CORE__AUTH_MANAGER"] == FAB
    assert airflow_login.login_hint(stack).startswith("log in as admin, password in ")


def test_without_one_the_stack_stays_all_admins_under_standalone(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__CORE__AUTH_MANAGER", raising=False)
    stack = AirflowStack(tmp_path)
    assert (stack.auth_manager, stack.separate) == (None, False)
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", airflow_login.SIMPLE_AUTH_MANAGER)
    assert AirflowStack(tmp_path).auth_manager is None
    assert airflow_login.login_hint(stack) == "no login locally"


def test_the_admin_password_is_made_once_and_readable_by_the_owner_only(tmp_path):
    password = airflow_login.admin_password(tmp_path)
    assert len(password) >= 16 and airflow_login.admin_password(tmp_path) == password
    mode = stat.S_IMODE((tmp_path / airflow_login.ADMIN_PASSWORD_FILE).stat().st_mode)
    assert mode == 0o600
