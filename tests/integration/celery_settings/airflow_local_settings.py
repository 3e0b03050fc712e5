"""Airflow's cluster policy for test_celery's stack only: a retry waits 1 s, not the DAGs' 30 s.

What test_celery proves is where the retries run, not when; see docs/development.md#celery-locally.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

RETRY_DELAY = dt.timedelta(seconds=1)


def task_policy(task: Any) -> None:
    """Shorten every task's retry delay (Airflow calls this for each task it loads)."""
    task.retry_delay = RETRY_DELAY
