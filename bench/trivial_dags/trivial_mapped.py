"""
### Airflow's floor: N trivial mapped tasks, shaped like the daily DAG.

**make_items** (returns ``list(range(n))``) → **work** (one mapped task per item, in the `ibkr`
pool, one slot each, as the daily DAG's collect) → **done**. No database, no IB, no imports
beyond Airflow's: what is left is the scheduler's, the executor's and the task runner's own cost
per task. Only the benchmark's Airflow loads it (``bench/daily_bench.py``); trigger it with
``{"n": 300}``.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from ibkr_market_data.settings import IBKR_POOL


@dag(
    dag_id="bench_trivial_mapped",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["bench"],
    default_args={"owner": "market-data", "retries": 3, "retry_delay": dt.timedelta(seconds=30)},
    params={"n": Param(300, type="integer", minimum=0, maximum=1024, title="Mapped tasks")},
)
def bench_trivial_mapped():
    """Build the DAG: make_items, then one mapped work task per item, then done."""

    @task(retries=0)
    def make_items() -> list[int]:
        return list(range(int(get_current_context()["params"]["n"])))

    @task(pool=IBKR_POOL, map_index_template="{{ item }}")
    def work(item: int) -> int:
        get_current_context()["item"] = item  # type: ignore[typeddict-unknown-key]
        return item

    @task(trigger_rule="all_done", retries=0)
    def done(items: list[int]) -> int:
        return len(items)

    items = make_items()
    work.expand(item=items) >> done(items)


dag_object = bench_trivial_mapped()

if __name__ == "__main__":
    dag_object.test()
