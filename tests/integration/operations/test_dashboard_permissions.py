"""Who may read the dashboard, on a real API server under FAB's auth manager: by permission, not by login.

Users and roles are made through FAB's own REST API, as an admin would.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.airflow_stack import FabStack, running_fab_stack

pytestmark = pytest.mark.scheduler

#: Every route of the dashboard, with what a viewer of the market-data DAGs gets.
ROUTES = {
    "/market-data/": 200,
    "/market-data/api/coverage": 200,
    "/market-data/api/freshness": 200,
    "/market-data/api/runs": 200,
    "/market-data/api/failures": 200,
    "/market-data/api/metrics": 200,
    "/market-data/api/corporate-actions": 200,
    "/market-data/api/symbols/AAPL": 200,
    "/market-data/corporate-actions": 200,
    "/market-data/symbols/AAPL": 200,
    "/market-data/api/symbols/AAPL/candles": 200,
    "/market-data/sessions/NASDAQ/2025-01-13": 200,
    "/market-data/static/plotly.min.js": 200,
    "/market-data/symbols/?symbol=AAPL": 303,
    "/market-data/docs": 200,
    "/market-data/openapi.json": 200,
    "/market-data/redoc": 404,
    "/market-data/no-such-page": 404,
}

PASSWORD = "Viewer-pass-1"  # noqa: S105 (a throwaway test user's)


def can_read(resource: str) -> dict:
    return {"action": {"name": "can_read"}, "resource": {"name": resource}}


#: username -> (role, its permissions; None for FAB's built-in role of that name)
USERS = {
    "viewer": ("Viewer", None),
    # The case: a user limited to other DAGs read every run.
    "other_team": ("OtherTeam", [can_read("DAG:other_team_dag"), can_read("DAG Runs"), can_read("Website")]),
    # One of the three DAGs is not enough: the dashboard shows the runs of all three.
    "daily_only": ("DailyOnly", [can_read("DAG:daily_market_data"), can_read("DAG Runs")]),
}


@pytest.fixture(scope="module")
def tokens(fab_airflow_stack: FabStack) -> dict[str, str]:
    """Create the users of ``USERS`` through FAB's API; return a token of each, logged in by password."""
    stack = fab_airflow_stack.airflow
    admin = {"Authorization": f"Bearer {stack.token()}"}
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        for username, (role, permissions) in USERS.items():
            if permissions is not None:
                made = client.post(
                    "/auth/fab/v1/roles", json={"name": role, "actions": permissions}, headers=admin
                )
                assert made.status_code in (200, 201), made.text
            user = {
                "username": username,
                "email": f"{username}@example.com",
                "first_name": username,
                "last_name": "Test",
                "roles": [{"name": role}],
                "password": PASSWORD,
            }
            made = client.post("/auth/fab/v1/users", json=user, headers=admin)
            assert made.status_code in (200, 201), made.text
        return {
            username: client.post("/auth/token", json={"username": username, "password": PASSWORD}).json()[
                "access_token"
            ]
            for username in USERS
        }


@pytest.fixture
def client(fab_airflow_stack: FabStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fab_airflow_stack.airflow.base_url, timeout=30) as http:
        yield http


@pytest.mark.parametrize(("path", "viewer_status"), ROUTES.items())
def test_every_route_is_by_permission_to_read_the_market_data_dags_runs(client, tokens, path, viewer_status):
    assert client.get(path).status_code == 401, "anonymous"
    for username in ("other_team", "daily_only"):
        denied = client.get(path, headers={"Authorization": f"Bearer {tokens[username]}"})
        assert denied.status_code == 403, (username, denied.text[:300])
    allowed = client.get(path, headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert allowed.status_code == viewer_status, allowed.text[:300]
    if path.endswith("/openapi.json"):
        assert {"/api/coverage", "/api/runs", "/api/symbols/{symbol}"} <= set(allowed.json()["paths"])
    if path.endswith("/docs"):
        assert "'/market-data/openapi.json'" in allowed.text  # the schema under the mount prefix


@pytest.fixture(scope="module")
def public_role_stack(market_db_server, stack_simulator, tmp_path_factory) -> Iterator[FabStack]:
    """Airflow under FAB with public access: a request without a token gets the ``Public`` role's rights."""
    env = {"AIRFLOW__FAB__AUTH_ROLE_PUBLIC": "Public"}
    with running_fab_stack(market_db_server, stack_simulator, tmp_path_factory.mktemp("dags"), env) as stack:
        yield stack


def test_under_fabs_public_role_an_anonymous_request_has_that_roles_rights_only(public_role_stack):
    # FAB's Public role has no permission on DAGs: anonymous requests were admitted on login alone.
    with httpx.Client(base_url=public_role_stack.airflow.base_url, timeout=30) as anonymous:
        listed = anonymous.get("/api/v2/dags")
        assert listed.status_code == 403, listed.text  # public access is on (else 401), without DAGs
        answers = {path: anonymous.get(path).status_code for path in ROUTES}
    assert answers == dict.fromkeys(ROUTES, 403)
