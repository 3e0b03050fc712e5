"""The daily DAG's date and lookback params read from Airflow's run type (no database, no IB)."""

import datetime as dt

import pytest
from airflow.utils.types import DagRunType

from ibkr_market_data.errors import InvalidRunParamError
from ibkr_market_data.tasks.daily import lookback_param, resolve_date

NOW = dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC)


def test_daily_task_accepts_airflows_run_type_enum():
    logical = dt.datetime(2025, 1, 20, tzinfo=dt.UTC)
    assert resolve_date({}, DagRunType.SCHEDULED, logical, NOW, now=NOW) == "2025-01-20"
    assert resolve_date({}, DagRunType.BACKFILL_JOB, logical, NOW, now=NOW) == "2025-01-20"
    assert resolve_date({}, DagRunType.MANUAL, logical, NOW, now=NOW) == "2025-01-17"


def test_a_backfill_run_of_the_daily_dag_covers_its_own_date_alone():
    assert lookback_param({}) == 5
    assert lookback_param({"lookback_sessions": 3}, DagRunType.SCHEDULED) == 3
    assert lookback_param({"lookback_sessions": 5}, DagRunType.BACKFILL_JOB) == 1
    for bad in (0, 31, "5", True, 2.5):
        with pytest.raises(InvalidRunParamError, match="Param 'lookback_sessions'"):
            lookback_param({"lookback_sessions": bad})
