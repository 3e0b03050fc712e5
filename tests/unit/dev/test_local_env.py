"""The local stack's embedded defaults that need no running service."""

import os

from cryptography.fernet import Fernet

from ibkr_market_data_dev.local_env import (
    AIRFLOW_METADATA_DATABASE,
    airflow_metadata_database,
    configure_airflow,
    home_fernet_key,
)


def test_each_fernet_key_gets_a_metadata_database_of_its_own_and_keeps_it():
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()

    assert airflow_metadata_database(first) == airflow_metadata_database(first)
    assert airflow_metadata_database(first) != airflow_metadata_database(second)
    name = airflow_metadata_database(first)
    assert name.startswith(f"{AIRFLOW_METADATA_DATABASE}_") and first not in name
    assert len(name) <= 63 and name == name.lower()  # a PostgreSQL identifier as it is


def test_a_fresh_home_gets_a_key_of_its_own_before_airflow_writes_its_config(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__CORE__FERNET_KEY", raising=False)
    first, second = tmp_path / "clone-1", tmp_path / "clone-2"
    first.mkdir()
    second.mkdir()

    key = home_fernet_key(first)
    Fernet(key.encode())  # a valid key
    assert home_fernet_key(second) != key  # not one shared empty key
    assert (first / "fernet.key").stat().st_mode & 0o077 == 0
    # Airflow then writes its config with a key of its own: the home keeps the first one.
    (first / "airflow.cfg").write_text(f"[core]\nfernet_key = {Fernet.generate_key().decode()}\n")
    assert home_fernet_key(first) == key


def test_a_home_from_before_the_key_file_keeps_its_configured_key(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__CORE__FERNET_KEY", raising=False)
    configured = Fernet.generate_key().decode()
    (tmp_path / "airflow.cfg").write_text(f"[core]\nfernet_key = {configured}\nsql = %(x)s\n")
    assert home_fernet_key(tmp_path) == configured
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "from-the-environment")
    assert home_fernet_key(tmp_path) == "from-the-environment"


def test_airflow_logs_without_colour_codes_unless_told_otherwise(monkeypatch):
    name = "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG"
    monkeypatch.setenv(name, "placeholder")  # undone after the test, whatever configure_airflow sets
    monkeypatch.delenv(name)
    configure_airflow()
    assert os.environ[name] == "False"  # the records go to a file, even from a terminal
    monkeypatch.setenv(name, "True")
    configure_airflow()
    assert os.environ[name] == "True"
