"""The production docker-compose.yaml and Dockerfile, read as data (no Docker engine or compose tool).

Every service, the shared Airflow settings, health checks, the gateway's API port kept on the compose
network, no secret written in the file, and a production auth manager.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
LONG_RUNNING = ("postgres", "market-data-db", "redis", "ib-gateway", *AIRFLOW_SERVICES[1:])
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$|PASSWD", re.IGNORECASE)
VARIABLE = re.compile(r"\$\{[A-Z_][A-Z0-9_]*(?::?[-?][^}]*)?\}")
CREDENTIALS_IN_URI = re.compile(r"://([^/@\s]*)@")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))


def _environment(service: dict) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment as a mapping, so the anchors merge"
    return {name: str(value) for name, value in environment.items()}


def test_every_service_is_defined(compose):
    assert set(compose["services"]) == {
        "postgres",
        "market-data-db",
        "redis",
        "ib-gateway",
        *AIRFLOW_SERVICES,
    }


def test_airflow_services_share_the_common_settings_and_image(compose):
    common = compose["x-airflow-common"]
    assert common["build"] == "."
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["image"] == common["image"], name
        environment = _environment(service)
        for key, value in common["environment"].items():
            assert environment[key] == str(value), (name, key)
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_the_production_auth_manager_is_configured(compose, name):
    assert _environment(compose["services"][name])["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER


def test_the_image_configures_the_production_auth_manager():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"AIRFLOW__CORE__AUTH_MANAGER={FAB_AUTH_MANAGER}" in dockerfile
    assert "SimpleAuthManager" not in dockerfile
    assert "apache-airflow-providers-fab==" in (ROOT / "requirements.txt").read_text(encoding="utf-8")


def test_simple_auth_manager_appears_nowhere_in_the_compose_file():
    assert "simple_auth_manager" not in (ROOT / "docker-compose.yaml").read_text(encoding="utf-8").lower()


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_health_check(compose, name):
    healthcheck = compose["services"][name]["healthcheck"]
    assert healthcheck["test"] and healthcheck["interval"]


def test_the_workers_scale_and_wait_for_the_gateway(compose):
    worker = compose["services"]["airflow-worker"]
    assert worker["command"] == "celery worker"
    assert worker["deploy"]["replicas"] == "${AIRFLOW_WORKERS:-2}"
    assert worker["depends_on"]["ib-gateway"]["condition"] == "service_healthy"


def test_the_init_service_runs_migrations_pools_and_symbols_once(compose):
    init = compose["services"]["airflow-init"]
    script = "\n".join(init["command"])
    for step in (
        "airflow db migrate",
        "airflow pools import /opt/airflow/pools.json",
        "python -m ibkr_market_data.cli migrate",
        "python -m ibkr_market_data.cli load-symbols",
    ):
        assert step in script, step
    assert init["restart"] == "no"
    for name in AIRFLOW_SERVICES[1:]:
        condition = compose["services"][name]["depends_on"]["airflow-init"]["condition"]
        assert condition == "service_completed_successfully", name


def test_the_gateway_api_port_is_not_published(compose):
    gateway = compose["services"]["ib-gateway"]
    assert "ports" not in gateway
    assert gateway["image"].startswith("ghcr.io/gnzsnz/ib-gateway:")
    assert gateway["environment"]["TWS_PASSWORD_FILE"] == "/run/secrets/tws_password"
    assert "TWS_PASSWORD" not in gateway["environment"]
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert published == ["${AIRFLOW_BIND:-127.0.0.1}:${AIRFLOW_PORT:-8080}:8080"]


def test_the_ui_is_published_on_loopback_unless_told_otherwise(compose):
    [port] = compose["services"]["airflow-apiserver"]["ports"]
    bind = port.split(":-", 1)[1].split("}", 1)[0]
    assert bind == "127.0.0.1", "the UI answers on this host only by default"


def test_no_server_takes_a_password_on_its_command_line(compose):
    # A long-running process's arguments are readable by every user of the host (ps).
    for name in LONG_RUNNING:
        command = compose["services"][name].get("command", "")
        command = " ".join(command) if isinstance(command, list) else command
        assert "--requirepass" not in command and "://" not in command, name


def test_the_init_service_does_not_hide_a_failure(compose):
    script = "\n".join(compose["services"]["airflow-init"]["command"])
    assert "|| true" not in script and "set -euo pipefail" in script


def test_credentials_beside_the_compose_file_are_never_committed():
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in ignored and "secrets/" in ignored


def _all_environment_values(compose):
    yield from compose["x-airflow-common"]["environment"].items()
    for service in compose["services"].values():
        yield from _environment(service).items()


def test_no_secret_is_written_in_the_file(compose):
    checked = 0
    for name, value in _all_environment_values(compose):
        if SECRET_NAME.search(name) and not name.endswith("_FILE"):
            assert VARIABLE.fullmatch(value), f"{name} must be a ${{VAR}} reference, not {value!r}"
            checked += 1
        for userinfo in CREDENTIALS_IN_URI.findall(value):
            if ":" in userinfo:
                password = userinfo.split(":", 1)[1]
                assert VARIABLE.fullmatch(password), f"{name} carries a literal password in its URI"
                checked += 1
    assert checked >= 8


def test_the_secret_check_catches_a_literal_password():
    assert not VARIABLE.fullmatch("hunter2")
    assert CREDENTIALS_IN_URI.findall("postgresql://airflow:hunter2@postgres/airflow") == ["airflow:hunter2"]
