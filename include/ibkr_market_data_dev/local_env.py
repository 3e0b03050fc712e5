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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ibkr_market_data_dev import local_postgres

if TYPE_CHECKING:
    from tws_simulator.testing import SimulatorThread

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


@contextmanager
def local_ibkr(port: int = 0, seed: int = 42) -> Iterator[SimulatorThread | None]:
    """Serve ``ibkr_default`` from the TWS simulator while the block runs, unless it is configured.

    Yields the running simulator, or None when ``AIRFLOW_CONN_IBKR_DEFAULT`` is set.
    """
    if os.environ.get("AIRFLOW_CONN_IBKR_DEFAULT"):
        yield None
        return
    from ibkr_market_data_dev.simulated_ib import simulator_config
    from tws_simulator.testing import SimulatorThread

    with SimulatorThread(simulator_config(port=port, seed=seed)) as simulator:
        os.environ["AIRFLOW_CONN_IBKR_DEFAULT"] = (
            f"ibkr://{simulator.host}:{simulator.port}?client_id=1&client_id_range=32"
        )
        log.info("ibkr_default: TWS simulator on %s:%s", simulator.host, simulator.port)
        try:
            yield simulator
        finally:
            del os.environ["AIRFLOW_CONN_IBKR_DEFAULT"]
