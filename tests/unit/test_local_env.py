"""The local stack's embedded defaults that need no running service."""

from cryptography.fernet import Fernet

from ibkr_market_data_dev.local_env import AIRFLOW_METADATA_DATABASE, airflow_metadata_database


def test_each_fernet_key_gets_a_metadata_database_of_its_own_and_keeps_it():
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()

    assert airflow_metadata_database(first) == airflow_metadata_database(first)
    assert airflow_metadata_database(first) != airflow_metadata_database(second)
    name = airflow_metadata_database(first)
    assert name.startswith(f"{AIRFLOW_METADATA_DATABASE}_") and first not in name
    assert len(name) <= 63 and name == name.lower()  # a PostgreSQL identifier as it is
