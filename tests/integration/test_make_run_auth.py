"""``make run``'s stack under a configured auth manager (FAB's): kept, not replaced by the all-admins one."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.airflow_stack import FabStack

pytestmark = pytest.mark.scheduler


def test_a_configured_auth_manager_is_kept_and_the_stack_logs_in_as_its_admin(fab_airflow_stack: FabStack):
    stack = fab_airflow_stack.airflow
    with httpx.Client(base_url=stack.base_url, timeout=30) as anonymous:
        # Under the all-admins simple manager that standalone forces, both answered 200 to anyone.
        assert anonymous.get("/api/v2/dags").status_code == 401
        assert anonymous.get("/auth/token").status_code != 200
    assert stack.auth_manager is not None and stack.separate
    assert stack.dag_runs("market_data_freshness") is not None  # the stack's own calls, as admin
