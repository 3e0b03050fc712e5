"""The production docker-compose.yaml and Dockerfile, read as data (no Docker engine or compose tool).

Every service, the shared Airflow settings, health checks, the gateway's API port kept on the compose
network, a production auth manager, and every secret a file: never in the file, an environment value
or a command line; the settings Airflow builds from them parse back to a hostile password.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
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


def test_the_workers_scale_and_start_with_the_gateway(compose):
    worker = compose["services"]["airflow-worker"]
    assert worker["command"] == "celery worker"
    assert worker["deploy"]["replicas"] == "${AIRFLOW_WORKERS:-2}"
    assert worker["depends_on"]["ib-gateway"]["condition"] == "service_started"


def test_the_init_service_migrates_without_ib_once(compose):
    init = compose["services"]["airflow-init"]
    script = "\n".join(init["command"])
    for step in (
        "airflow db migrate",
        "airflow pools import /opt/airflow/pools.json",
        "python -m ibkr_market_data.cli migrate",
    ):
        assert step in script, step
    # The first daily run that reaches IB loads the symbols: a gateway waiting for 2FA stops nothing.
    assert "load-symbols" not in script
    assert "ib-gateway" not in init["depends_on"]
    assert init["restart"] == "no"
    for name in AIRFLOW_SERVICES[1:]:
        condition = compose["services"][name]["depends_on"]["airflow-init"]["condition"]
        assert condition == "service_completed_successfully", name


def test_no_airflow_service_waits_for_a_logged_in_gateway(compose):
    for name in AIRFLOW_SERVICES:
        gateway = compose["services"][name].get("depends_on", {}).get("ib-gateway")
        assert gateway is None or gateway["condition"] == "service_started", name


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


def _command_text(service: dict) -> str:
    parts = []
    for key in ("command", "entrypoint"):
        value = service.get(key, "")
        parts.append(" ".join(value) if isinstance(value, list) else str(value))
    test = service.get("healthcheck", {}).get("test", "")
    parts.append(" ".join(test) if isinstance(test, list) else str(test))
    return "\n".join(parts)


def test_no_secret_passes_through_a_compose_variable():
    # A ${VAR} lands in an environment value or a command line: secrets are files instead.
    names = {match.group(1) for match in re.finditer(r"\$\{([A-Z_][A-Z0-9_]*)", _compose_text())}
    assert names, "the variables were found"
    paths = {name for name in names if name.endswith("_FILE") or name == "SECRETS_DIR"}
    secret_names = {name for name in names - paths if SECRET_NAME.search(name)}
    assert secret_names == set(), secret_names


def test_no_secret_is_written_in_an_environment_value(compose):
    checked = 0
    for name, value in _all_environment_values(compose):
        for userinfo in CREDENTIALS_IN_URI.findall(value):
            # Only read_secret.py's placeholder, which it fills with the secret file's text.
            assert userinfo.partition(":")[2] in ("", "{secret}"), f"{name} holds a password in its URI"
        if SECRET_NAME.search(name) and not name.startswith("AIRFLOW__SECRETS__"):
            # Only a path to a secret file, or the command that reads one.
            assert name.endswith(("_FILE", "_CMD")), f"{name} must be a file or a *_CMD reading one"
            assert "/run/secrets/" in value, f"{name} reads no secret file: {value!r}"
            checked += 1
    assert checked >= 8


def test_no_secret_is_on_a_command_line(compose):
    # A process's arguments are readable by every user of the host (ps); files and stdin are not.
    for name, service in compose["services"].items():
        text = _command_text(service)
        assert "--requirepass" not in text and "--password" not in text, name
        assert not CREDENTIALS_IN_URI.search(text), name
        for variable in re.findall(r"\$\$\{?([A-Z_]+)", text):
            assert not SECRET_NAME.search(variable), f"{name} puts ${variable} on a command line"


def test_every_secret_read_is_a_mounted_file_secret(compose):
    declared = compose["secrets"]
    assert all(set(entry) == {"file"} for entry in declared.values())
    common = compose["x-airflow-common"]
    for name, service in compose["services"].items():
        texts = [_command_text(service), *(value for _, value in _environment(service).items())]
        read = {secret for text in texts for secret in re.findall(r"/run/secrets/([a-z_.]+)", text)}
        mounted = set(service.get("secrets", common["secrets"] if name in AIRFLOW_SERVICES else []))
        assert read <= mounted, (name, read - mounted)
        assert mounted <= set(declared), (name, mounted - set(declared))
    assert {"postgres_password", "market_data_db_password", "airflow_connections.json"} <= set(declared)


def test_the_secret_check_catches_a_literal_password():
    assert not VARIABLE.fullmatch("hunter2")
    assert CREDENTIALS_IN_URI.findall("postgresql://airflow:hunter2@postgres/airflow") == ["airflow:hunter2"]
    assert SECRET_NAME.search("AIRFLOW_ADMIN_PASSWORD") and not SECRET_NAME.search("AIRFLOW_ADMIN_USER")


# -- what Airflow makes of the secret files ------------------------------------------------------

HOSTILE = 'p@ss:/w%rd#1"\\ é'


def _compose_text() -> str:
    return (ROOT / "docker-compose.yaml").read_text(encoding="utf-8")


def _interpolated(value: str, secrets_dir: Path) -> str:
    """Return ``value`` as compose hands it over (defaults, ``$$``), run on ``secrets_dir`` and this repo."""
    value = re.sub(r"\$\{[A-Z_][A-Z0-9_]*:-([^}]*)\}", r"\1", value).replace("$$", "$")
    value = value.replace("/run/secrets/", f"{secrets_dir}/")
    value = value.replace("/opt/ibkr-market-data/read_secret.py", str(READ_SECRET))
    return value.replace("python -I -S ", f"{sys.executable} -I -S ")


READ_SECRET = ROOT / "deploy" / "read_secret.py"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    for name in ("postgres_password", "redis_password", "airflow_fernet_key", "airflow_jwt_secret"):
        (tmp_path / name).write_text(HOSTILE + "\n", encoding="utf-8")
    connections = {
        "market_data_db": {
            "conn_type": "postgres",
            "host": "market-data-db",
            "port": 5432,
            "login": "market_data",
            "password": HOSTILE,
            "schema": "market_data",
            "extra": {"options": "-c statement_timeout=60000"},
        }
    }
    (tmp_path / "airflow_connections.json").write_text(json.dumps(connections), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("section", "key"),
    [("database", "sql_alchemy_conn"), ("celery", "result_backend"), ("celery", "broker_url")],
)
def test_airflow_builds_each_url_with_the_files_password_url_encoded(
    compose, secrets_dir, monkeypatch, section, key
):
    from airflow.configuration import conf

    variable = f"AIRFLOW__{section.upper()}__{key.upper()}"
    command = compose["x-airflow-common"]["environment"][f"{variable}_CMD"]
    monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(f"{variable}_CMD", _interpolated(command, secrets_dir))

    url = conf._get_env_var_option(section, key)  # Airflow's own *_CMD path, as every component runs it

    assert "\n" not in url
    if key == "broker_url":
        from kombu.utils.url import url_to_parts

        assert url_to_parts(url).password == HOSTILE and url_to_parts(url).hostname == "redis"
    else:
        from sqlalchemy.engine import make_url

        parsed = make_url(url.removeprefix("db+"))
        assert (parsed.username, parsed.password, parsed.host, parsed.database) == (
            "airflow",
            HOSTILE,
            "postgres",
            "airflow",
        )


def test_a_secret_key_is_read_as_written_without_its_newline(compose, secrets_dir, monkeypatch):
    from airflow.configuration import conf

    command = compose["x-airflow-common"]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET_CMD"]
    monkeypatch.delenv("AIRFLOW__API_AUTH__JWT_SECRET", raising=False)
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET_CMD", _interpolated(command, secrets_dir))
    assert conf._get_env_var_option("api_auth", "jwt_secret") == HOSTILE


def test_the_connections_file_gives_airflow_the_hostile_password(compose, secrets_dir):
    import importlib

    environment = compose["x-airflow-common"]["environment"]
    module, _, name = environment["AIRFLOW__SECRETS__BACKEND"].rpartition(".")
    backend_class = getattr(importlib.import_module(module), name)
    kwargs = json.loads(_interpolated(environment["AIRFLOW__SECRETS__BACKEND_KWARGS"], secrets_dir))
    conn = backend_class(**kwargs).get_connection("market_data_db")

    assert (conn.conn_type, conn.host, conn.login, conn.password) == (
        "postgres",
        "market-data-db",
        "market_data",
        HOSTILE,
    )
    assert conn.extra_dejson == {"options": "-c statement_timeout=60000"}


def test_the_ibkr_connection_is_json_airflow_parses(compose, secrets_dir):
    from airflow.models.connection import Connection

    value = _interpolated(
        compose["x-airflow-common"]["environment"]["AIRFLOW_CONN_IBKR_DEFAULT"], secrets_dir
    )
    conn = Connection.from_json(value, conn_id="ibkr_default")
    assert (conn.conn_type, conn.host, conn.port) == ("ibkr", "ib-gateway", 4004)
    assert conn.extra_dejson == {"client_id": 1, "client_id_range": 32, "readonly": True}


def test_the_hostile_password_is_lost_in_an_unencoded_uri():
    # The negative control of the tests above: pasted into a URI as it is, the password is lost.
    import urllib.parse

    from sqlalchemy.engine import make_url

    def password_of(url: str) -> str | None:
        try:
            return make_url(url).password
        except ValueError:  # refused outright
            return None

    assert password_of(f"postgresql://airflow:{HOSTILE}@postgres:5432/airflow") != HOSTILE
    encoded = urllib.parse.quote(HOSTILE, safe="")
    assert password_of(f"postgresql://airflow:{encoded}@postgres:5432/airflow") == HOSTILE


@pytest.mark.parametrize(
    ("content", "template", "error"),
    [
        ("", None, "is empty"),
        ("x\n", "postgresql://a@b/c", "has no {secret}"),
    ],
)
def test_read_secret_ends_a_bad_file_or_template_in_one_error_line(tmp_path, content, template, error):
    secret = tmp_path / "secret"
    secret.write_text(content, encoding="utf-8")
    argv = [sys.executable, str(READ_SECRET), str(secret), *([template] if template else [])]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and error in result.stderr
    assert len(result.stderr.splitlines()) == 1
