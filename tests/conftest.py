"""Test configuration: Airflow runs from a throwaway home, before anything imports it.

Airflow reads its configuration at import, so the environment is set here, at the top of the
root conftest. The market-data database, the TWS simulator and the Airflow metadata database
come from the fixture modules below.
"""

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_airflow_home = tempfile.mkdtemp(prefix="ibkr-market-data-airflow-")
os.environ["AIRFLOW_HOME"] = _airflow_home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_airflow_home}/airflow.db"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
# Most tests are about daily bars: by default only those are collected here (the shipped default
# adds intraday bars for priority-1 symbols). The intraday tests (test_intraday.py) opt in.
os.environ["IBKR_INTRADAY_MAX_PRIORITY"] = "0"
# The daily run asks IB again after a 162 "no data" (test_no_data_reask.py): here without its pause.
os.environ["IBKR_NO_DATA_REASK_SECONDS"] = "0"

pytest_plugins = [
    "tws_simulator.pytest_plugin",
    "tests.fixtures.postgres",
    "tests.fixtures.simulator",
    "tests.fixtures.airflow_env",
    "tests.fixtures.airflow_stack",
]
