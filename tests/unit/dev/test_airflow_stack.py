"""The dev stack's environment: what keeps two stacks on one machine apart."""

from ibkr_market_data_dev.airflow_stack import AirflowStack


def celery_stack(home):
    return AirflowStack(home, executor="celery", broker_url="redis://127.0.0.1:6379/0")


def test_two_celery_stacks_on_one_broker_use_queues_of_their_own(tmp_path):
    first = celery_stack(tmp_path / "first").environment()
    second = celery_stack(tmp_path / "second").environment()

    assert first["AIRFLOW__CELERY__BROKER_URL"] == second["AIRFLOW__CELERY__BROKER_URL"]
    assert first["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] != second["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    # One home keeps its queue: a restarted worker serves the tasks queued before.
    assert (
        celery_stack(tmp_path / "first").environment()["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
        == (first["AIRFLOW__OPERATORS__DEFAULT_QUEUE"])
    )
