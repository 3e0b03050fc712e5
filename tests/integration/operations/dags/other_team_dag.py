"""A DAG beside the market-data ones, for a role limited to it (the dashboard's permission tests)."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task


@dag(dag_id="other_team_dag", schedule=None, start_date=dt.datetime(2025, 1, 1), catchup=False)
def other_team_dag():
    """Do nothing: only its permissions matter."""

    @task
    def noop() -> None:
        pass

    noop()


other_team_dag()
