"""The dashboard in Airflow's API app: mounted by the plugin, behind the auth manager, linked in the nav."""

from __future__ import annotations

import secrets

import pytest
from fastapi.testclient import TestClient

#: One per test session: Airflow caches its token signer and validator once built.
JWT_SECRET = secrets.token_hex(32)


@pytest.fixture
def airflow_api(airflow_db, market_db, monkeypatch):
    """Build Airflow's API server app in-process, with the simple auth manager and no all-admins shortcut."""
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
    from airflow.api_fastapi.app import create_app

    with TestClient(create_app()) as client:
        yield client


def admin_token() -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))


@pytest.mark.parametrize(
    "path",
    [
        "/market-data/",
        "/market-data/api/coverage",
        "/market-data/symbols/AAPL",
        "/market-data/api/symbols/AAPL/candles",
        "/market-data/sessions/NASDAQ/2025-01-13",
        "/market-data/static/plotly.min.js",
    ],
)
def test_without_a_valid_token_every_page_is_refused(airflow_api, path):
    assert airflow_api.get(path).status_code == 401
    forged = airflow_api.get(path, headers={"Authorization": "Bearer not-a-jwt"})
    assert forged.status_code == 403
    assert airflow_api.get(path, cookies={"_token": "not-a-jwt"}).status_code in (401, 403)


def test_with_an_airflow_token_the_dashboard_answers(airflow_api, week):
    headers = {"Authorization": f"Bearer {admin_token()}"}
    response = airflow_api.get(
        "/market-data/api/coverage", params={"from": "2025-01-13", "to": "2025-01-13"}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert {row["exchange"]: row["stored"] for row in response.json()["rows"]} == {
        "ARCA": 1,
        "ASX": 1,
        "NASDAQ": 2,
    }
    page = airflow_api.get("/market-data/", headers=headers)
    assert page.status_code == 200 and "id='coverage'" in page.text
    assert "href='/market-data/api/coverage'" in page.text  # links carry the mount prefix


def test_the_nav_links_to_the_dashboard(airflow_api):
    headers = {"Authorization": f"Bearer {admin_token()}"}
    plugins = airflow_api.get("/api/v2/plugins", headers=headers).json()["plugins"]
    dashboard = next(plugin for plugin in plugins if plugin["name"] == "market_data_dashboard")
    assert dashboard["fastapi_apps"][0]["url_prefix"] == "/market-data"
    (view,) = dashboard["external_views"]
    assert (view["href"], view["destination"], view["url_route"]) == ("/market-data/", "nav", "market-data")


def test_an_unconfigured_database_is_a_clear_503(airflow_api, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MARKET_DATA_DB")
    response = airflow_api.get("/market-data/api/runs", headers={"Authorization": f"Bearer {admin_token()}"})
    assert response.status_code == 503
    assert "market_data_db" in response.json()["detail"]
