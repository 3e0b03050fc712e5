"""Give the local stack and ``make collect`` embedded defaults, used only where nothing is configured.

Airflow's home, the ``market_data`` database, the simulator as ``ibkr_default``; simulated bars
never go into a database someone configured. See docs/development.md#the-local-commands.
"""

from __future__ import annotations

import configparser
import hashlib
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
    # Log records go to files (terminal.logs_to_file): colour codes chosen for a terminal would clutter them.
    os.environ.setdefault("AIRFLOW__LOGGING__COLORED_CONSOLE_LOG", "False")
    return airflow_home


class LocalSetupError(RuntimeError):
    """The embedded defaults cannot be used with what is configured; the message says what to change."""


def is_configured(conn_id: str) -> bool:
    """Whether Airflow resolves connection ``conn_id`` (environment, secrets backend, metadata database)."""
    if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
        return True
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def check_local_setup() -> None:
    """Raise LocalSetupError where the embedded defaults cannot serve what is configured.

    The simulator must not serve IB to a configured market-data database, and synthetic symbols
    (``IBKR_SYNTHETIC_SYMBOLS``) exist only in the simulator. Call before :func:`ensure_market_db`,
    which configures ``market_data_db`` itself.
    """
    from ibkr_market_data.settings import IBKR_CONN_ID, MARKET_DATA_CONN_ID
    from ibkr_market_data_dev.simulated_ib import (
        SIMULATOR_VARIABLES,
        SYNTHETIC_SYMBOLS_VARIABLE,
        simulator_settings,
        synthetic_count,
    )

    try:
        synthetic = synthetic_count()
    except ValueError as exc:
        raise LocalSetupError(str(exc)) from None
    ibkr_configured = is_configured(IBKR_CONN_ID)
    if ibkr_configured:
        ignored = [name for name in SIMULATOR_VARIABLES if os.environ.get(name)]
        if ignored:
            log.warning(
                "%s: ignored, %s is configured (no simulator is started)", ", ".join(ignored), IBKR_CONN_ID
            )
    else:
        try:
            simulator_settings()
        except ValueError as exc:
            raise LocalSetupError(str(exc)) from None
    if synthetic and ibkr_configured:
        raise LocalSetupError(
            f"{SYNTHETIC_SYMBOLS_VARIABLE} adds symbols only the TWS simulator knows, but {IBKR_CONN_ID} "
            f"is configured; unset one of them."
        )
    if is_configured(MARKET_DATA_CONN_ID) and not ibkr_configured:
        raise LocalSetupError(
            f"{MARKET_DATA_CONN_ID} is configured but {IBKR_CONN_ID} is not: refusing to store the TWS "
            f"simulator's bars in a configured database. Configure {IBKR_CONN_ID} (a real TWS / IB "
            f"Gateway), or unset {MARKET_DATA_CONN_ID} to use the local market_data database."
        )


def ensure_market_db() -> str:
    """Return the market-data database URL, configuring ``AIRFLOW_CONN_MARKET_DATA_DB`` if it was not."""
    configured = local_postgres.configured_url()
    if configured:
        return configured
    url = local_postgres.ensure_database(local_postgres.server_url(), MARKET_DATA_DATABASE)
    os.environ["AIRFLOW_CONN_MARKET_DATA_DB"] = url
    log.info("market_data_db: %s", url.split("@")[-1])
    return url


#: Where ``make run EXECUTOR=celery`` looks for a broker when ``AIRFLOW__CELERY__BROKER_URL`` is not set.
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"


def celery_broker_url() -> str:
    """Return the configured Celery broker, else Redis on 127.0.0.1:6379 if it answers.

    :raises LocalSetupError: neither is there.
    """
    configured = os.environ.get("AIRFLOW__CELERY__BROKER_URL")
    if configured:
        return configured
    import redis

    try:
        redis.Redis.from_url(LOCAL_REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise LocalSetupError(
            f"No Celery broker: AIRFLOW__CELERY__BROKER_URL is not set and Redis does not answer on "
            f"127.0.0.1:6379 ({exc}). Start Redis there (Debian: apt-get install redis-server) or set "
            "AIRFLOW__CELERY__BROKER_URL."
        ) from None
    return LOCAL_REDIS_URL


def airflow_metadata_database(fernet_key: str) -> str:
    """Return the local stack's metadata database for an Airflow home whose ``[core] fernet_key`` is this.

    Airflow encrypts connection passwords and extras with the home's key, and the local PostgreSQL
    outlives any clone: a database shared by every home on the machine held rows that a new clone's
    key cannot read (the API answered 500 for them). Named for the key, each home keeps its own.
    """
    return f"{AIRFLOW_METADATA_DATABASE}_{hashlib.sha256(fernet_key.encode()).hexdigest()[:12]}"


def home_fernet_key(home: Path) -> str:
    """Return the fernet key of Airflow home ``home``, kept in its ``fernet.key`` (mode 600) from then on.

    ``AIRFLOW__CORE__FERNET_KEY`` wins when set. A home without the file keeps its airflow.cfg's key
    (homes from before the file), else gets a new one. A fresh home has no airflow.cfg until
    ``airflow standalone`` writes one, and a key read before that is empty: every fresh clone's first
    run met one database, encrypted with an earlier clone's key (the API answered 500). The stack
    passes this key to Airflow's processes, so they never use another.
    """
    configured = os.environ.get("AIRFLOW__CORE__FERNET_KEY", "").strip()
    if configured:
        return configured
    key_file = home / "fernet.key"
    if not key_file.exists():
        config = configparser.ConfigParser(interpolation=None)
        config.read(home / "airflow.cfg")
        key = config.get("core", "fernet_key", fallback="").strip()
        if not key:
            from cryptography.fernet import Fernet

            key = Fernet.generate_key().decode()
        key_file.touch(mode=0o600)
        key_file.write_text(key)
    return key_file.read_text().strip()


def airflow_metadata_url(fernet_key: str) -> str:
    """Return the SQLAlchemy URL of the metadata database of the home with this key, created if missing."""
    from ibkr_market_data.schema import sqlalchemy_url

    database = airflow_metadata_database(fernet_key)
    return sqlalchemy_url(local_postgres.ensure_database(local_postgres.server_url(), database))


@contextmanager
def local_ibkr(port: int = 0) -> Iterator[SimulatorThread | None]:
    """Serve ``ibkr_default`` from the TWS simulator while the block runs, unless it is configured.

    The simulator takes ``IBKR_SIM_FAULTS``, ``IBKR_SIM_NOW`` and ``IBKR_SIM_SEED`` as ``make sim`` does.
    Yields the running simulator, or None when ``ibkr_default`` is configured.
    """
    from ibkr_market_data.settings import IBKR_CONN_ID

    if is_configured(IBKR_CONN_ID):
        yield None
        return
    from ibkr_market_data_dev.simulated_ib import simulator_config, simulator_settings
    from tws_simulator.testing import SimulatorThread

    with SimulatorThread(simulator_config(port=port, **simulator_settings())) as simulator:
        os.environ["AIRFLOW_CONN_IBKR_DEFAULT"] = (
            f"ibkr://{simulator.host}:{simulator.port}?client_id=1&client_id_range=32"
        )
        log.info("ibkr_default: TWS simulator on %s:%s", simulator.host, simulator.port)
        try:
            yield simulator
        finally:
            del os.environ["AIRFLOW_CONN_IBKR_DEFAULT"]
