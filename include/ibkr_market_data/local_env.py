"""Embedded defaults for the local stack and ``make collect``: used only where nothing is configured.

* Airflow: home in ``.local/airflow`` (unless ``AIRFLOW_HOME`` is set), this repo's dags and
  plugins folders, no examples, SQLite metadata.
* ``market_data_db``: ``AIRFLOW_CONN_MARKET_DATA_DB`` if set, else database ``market_data`` on the
  local server or an embedded one (see ``local_postgres``).
* ``ibkr_default``: ``AIRFLOW_CONN_IBKR_DEFAULT`` if set, else the TWS simulator on a loopback port.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ibkr_market_data import local_postgres

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = REPO_ROOT / ".local"
MARKET_DATA_DATABASE = "market_data"
AIRFLOW_METADATA_DATABASE = "airflow_metadata"


def configure_airflow(home: Path | None = None) -> Path:
    """Set Airflow's environment defaults; call before anything imports airflow."""
    airflow_home = Path(os.environ.setdefault("AIRFLOW_HOME", str(home or LOCAL_DIR / "airflow")))
    airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO_ROOT / "plugins"))
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{airflow_home}/airflow.db")
    return airflow_home


def ensure_market_db() -> str:
    """The market-data database URL, configuring ``AIRFLOW_CONN_MARKET_DATA_DB`` if it was not."""
    configured = local_postgres.configured_url()
    if configured:
        return configured
    url = local_postgres.ensure_database(local_postgres.server_url(), MARKET_DATA_DATABASE)
    os.environ["AIRFLOW_CONN_MARKET_DATA_DB"] = url
    log.info("market_data_db: %s", url.split("@")[-1])
    return url


def airflow_metadata_url() -> str:
    """SQLAlchemy URL of database ``airflow_metadata`` on the local stack's PostgreSQL, created if missing."""
    from ibkr_market_data.schema import sqlalchemy_url

    return sqlalchemy_url(
        local_postgres.ensure_database(local_postgres.server_url(), AIRFLOW_METADATA_DATABASE)
    )


def ensure_ibkr(port: int = 0, seed: int = 42) -> Any:
    """Start the simulator and point ``ibkr_default`` at it, unless the connection is configured.

    Returns the running ``SimulatorThread`` (stop it when done), or None when IB is configured.
    """
    if os.environ.get("AIRFLOW_CONN_IBKR_DEFAULT"):
        return None
    from ibkr_market_data.simulator.server import SimulatorConfig
    from ibkr_market_data.simulator.testing import SimulatorThread

    simulator = SimulatorThread(SimulatorConfig(port=port, seed=seed))
    simulator.__enter__()
    os.environ["AIRFLOW_CONN_IBKR_DEFAULT"] = (
        f"ibkr://{simulator.host}:{simulator.port}?client_id=1&client_id_range=32"
    )
    log.info("ibkr_default: TWS simulator on %s:%s", simulator.host, simulator.port)
    return simulator
