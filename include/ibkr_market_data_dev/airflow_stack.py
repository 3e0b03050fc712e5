"""Run a real Airflow and drive it through its REST API: ``make run``, scheduler tests, benchmarks.

``airflow standalone`` (LocalExecutor) as one process tree, or its components one by one (Celery,
or a scheduler that a fault may kill alone). See docs/development.md#running-airflow-from-code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

from ibkr_market_data_dev import airflow_login

log = logging.getLogger(__name__)

FINISHED = {"success", "failed"}


class AirflowStackError(RuntimeError):
    """Airflow did not start, answer or finish in time; the message says what and where to look."""


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def kill_tree(leader: int) -> list[int]:
    """SIGKILL the process group led by ``leader`` and every descendant of ``leader``; return their pids.

    Airflow's task runners lead process groups of their own: a ``killpg`` of their executor's
    group alone leaves them running. The group is stopped first, so that none forks meanwhile.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGSTOP)
    try:
        root = psutil.Process(leader)
        pids = {leader, *(child.pid for child in root.children(recursive=True))}
    except psutil.NoSuchProcess:
        pids = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)
    return sorted(pids)


def _wait_until(check: Any, timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll ``check()`` until it returns something truthy; AirflowStackError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AirflowStackError(f"Timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


#: Components started one by one beside the API server (``airflow standalone`` runs them itself).
COMPONENTS = ("scheduler", "dag-processor", "triggerer")


class AirflowStack:
    """Airflow in ``home``, its API on 127.0.0.1:``port``, with ``env`` added to its environment.

    ``executor`` is ``local`` (``airflow standalone``) or ``celery`` (``workers`` Celery workers of
    ``worker_concurrency`` task slots each, their broker at ``broker_url``).
    """

    def __init__(
        self,
        home: Path,
        port: int = 8080,
        env: Mapping[str, str] | None = None,
        *,
        executor: str = "local",
        workers: int = 2,
        worker_concurrency: int = 8,
        broker_url: str | None = None,
        separate: bool = False,
    ) -> None:
        if executor not in ("local", "celery"):
            raise ValueError(f"executor must be local or celery, not {executor!r}")
        if executor == "celery" and (workers < 1 or not broker_url):
            raise ValueError("the celery executor needs at least one worker and a broker_url")
        self.home = Path(home)
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.extra_env = dict(env or {})
        self.executor = executor
        self.workers = workers
        self.worker_concurrency = worker_concurrency
        self.broker_url = broker_url
        #: A configured auth manager (FAB's) kept as is; None: the simple one, everyone admin.
        self.auth_manager = airflow_login.configured_auth_manager({**os.environ, **self.extra_env})
        #: Components started one by one rather than by ``airflow standalone`` (always under Celery, and
        #: under a configured auth manager, which standalone replaces with the simple one).
        self.separate = separate or executor == "celery" or self.auth_manager is not None
        #: name -> process, each the leader of its own process group.
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The process whose death means the stack is down: standalone, or the API server."""
        return self.processes.get("standalone") or self.processes.get("api-server")

    @property
    def airflow_bin(self) -> str:
        """Return the ``airflow`` executable of this Python's environment."""
        return str(Path(sys.executable).with_name("airflow"))

    def environment(self) -> dict[str, str]:
        """Return the environment of every Airflow process of this stack."""
        # Another Airflow's settings in this process's environment (a test session's) must not leak in.
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__DATABASE__", "AIRFLOW_HOME"))
        }
        # standalone starts its components as `airflow ...` from PATH: put this venv's first.
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            {
                "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
            }
        )
        if self.separate:
            # Components started apart must sign and check the same tokens.
            env["AIRFLOW__API_AUTH__JWT_SECRET"] = self._jwt_secret()
        if self.executor == "celery":
            env.update(self._celery_settings(env))
        env.update(self.extra_env)
        return env

    def _celery_settings(self, env: Mapping[str, str]) -> dict[str, str]:
        metadata = self.extra_env.get(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        )
        assert self.broker_url is not None
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            # Celery's database backend speaks SQLAlchemy: the metadata URL with a db+ prefix.
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+"
            + metadata.replace("+psycopg", "").replace("+psycopg2", ""),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            # The broker is the machine's shared Redis: a queue of this home's own keeps another
            # stack's workers (a test's, a campaign's) from taking this stack's tasks.
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.celery_queue,
        }

    @property
    def celery_queue(self) -> str:
        """The Celery queue this stack's tasks go to and its workers serve: one per Airflow home."""
        return "ibkr_market_data_" + hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:12]

    def _jwt_secret(self) -> str:
        """One random secret per Airflow home, kept in it with owner-only permissions."""
        path = self.home / "jwt_secret"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def cli(self, *args: str) -> str:
        """Run one ``airflow`` CLI command against this home (~7 s each: Airflow's import)."""
        result = subprocess.run(
            [self.airflow_bin, *args], env=self.environment(), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise AirflowStackError(f"airflow {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    @property
    def log_file(self) -> Path:
        """The log of standalone, or of the API server when components run apart (each has its own)."""
        return self.home / ("api-server.log" if self.separate else "standalone.log")

    def start(self, timeout: float = 240) -> None:
        """Start the components, wait up to ``timeout`` s for the API's health check; stop all on failure."""
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            if not self.separate:
                self._spawn("standalone", "standalone")
            else:
                self.cli("db", "migrate")
                if self.auth_manager:
                    airflow_login.create_admin(self)
                self._spawn("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port))
                for component in COMPONENTS:
                    self._spawn_component(component)
                if self.executor == "celery":
                    for number in range(1, self.workers + 1):
                        self.start_worker(number)
            self.wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_until_ready(self, timeout: float = 240) -> None:
        """Wait for the API's health check, then for the execution API's first answer.

        The API server builds its execution API on the first request to it (about 10 s, longer on
        a busy machine). Asked by the first task instead, it times out after 5 s and retries with
        backoff: the first run's first task started 7-30 s late. Asked here, that cost overlaps
        whatever runs while Airflow starts (``make run`` loads the universe meanwhile).
        """
        _wait_until(self._healthy, timeout, "the Airflow API's health check")
        _wait_until(self._execution_api_answers, timeout, "the execution API's health check")

    def start_worker(self, number: int) -> subprocess.Popen[bytes]:
        """Start (or restart) Celery worker ``number``, named ``worker<number>@<host>``."""
        name = f"worker{number}"
        # Several workers on one host: each its own name and pid file, and none serving task logs
        # on the shared log-server port (the API server reads them from this home's log folder).
        return self._spawn(
            name,
            *("celery", "worker", "--celery-hostname", f"{name}@%h", "--pid", str(self.home / f"{name}.pid")),
            "--skip-serve-logs",
        )

    def worker_pids(self) -> dict[str, int]:
        """Return the running Celery workers' main process ids, by name."""
        return {
            name: process.pid
            for name, process in self.processes.items()
            if name.startswith("worker") and process.poll() is None
        }

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL a Celery worker's processes, its task runners too, as if its machine died mid-task.

        Returns the pids killed.
        """
        process = self.processes[name]
        killed = kill_tree(process.pid)
        process.wait(timeout=30)
        return killed

    def kill(self, component: str) -> list[int]:
        """SIGKILL ``component``'s processes, its task runners too; return their pids, its own first.

        Only for components started apart (``separate``); :meth:`restart` starts it again.
        """
        if component not in COMPONENTS or component not in self.processes:
            raise ValueError(f"{component!r} is not a component started apart; have {sorted(self.processes)}")
        process = self.processes[component]
        killed = kill_tree(process.pid)
        process.wait(timeout=30)
        return [process.pid, *(pid for pid in killed if pid != process.pid)]

    def restart(self, component: str) -> int:
        """Start ``component`` (killed by :meth:`kill`) again; return its new pid."""
        return self._spawn_component(component).pid

    def kill_and_restart(self, component: str, down_seconds: float) -> int:
        """SIGKILL ``component``'s processes, task runners too; start it ``down_seconds`` later.

        Returns the killed process id. Only for components started apart (``separate``).
        """
        pid = self.kill(component)[0]
        time.sleep(down_seconds)
        self.restart(component)
        return pid

    def _spawn_component(self, component: str) -> subprocess.Popen[bytes]:
        # Airflow's log server binds every interface ([::]:8793, not configurable); the API server
        # of this one-machine stack reads task logs from the shared log folder, so none is started.
        skip_log_server = ("--skip-serve-logs",) if component == "scheduler" else ()
        return self._spawn(component, component, *skip_log_server)

    def _spawn(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        with (self.home / f"{name}.log").open("ab") as log_file:
            process = subprocess.Popen(
                [self.airflow_bin, *command],
                env=self.environment(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        log.info("Started airflow %s (pid %s), log in %s", " ".join(command), process.pid, log_file.name)
        return process

    def _healthy(self) -> bool:
        for name, process in self.processes.items():
            if process.poll() is not None and not name.startswith("worker"):
                raise AirflowStackError(f"airflow {name} exited with {process.returncode}; see {name}.log")
        try:
            with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as response:
                health = json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return health.get("scheduler", {}).get("status") == "healthy"

    def _execution_api_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/execution/health", timeout=60) as response:
                return json.load(response).get("status") == "healthy"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self) -> None:
        """SIGTERM every process group; whatever is still alive 30 s after its leader gets SIGKILL."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
        # A scheduler can outlive standalone itself while it finishes its loop.
        deadline = time.monotonic() + 30
        alive = set(self.processes.values())
        while alive and time.monotonic() < deadline:
            alive = {process for process in alive if _group_alive(process.pid)}
            if alive:
                time.sleep(0.5)
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        self.processes.clear()

    def kill_all(self) -> None:
        """SIGKILL every component with its task runners: a throwaway stack, whose shutdown nobody waits for.

        ``stop()`` still reaps them. Airflow's graceful shutdown takes ~6 s (API server, scheduler).
        """
        for process in self.processes.values():
            kill_tree(process.pid)

    def __enter__(self) -> AirflowStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- REST API -----------------------------------------------------------------------------

    def token(self) -> str:
        """Return a token for the REST API: without login (simple auth manager), else as the local admin."""
        if self._token is None and self.auth_manager:
            login = airflow_login.credentials(self.home)
            self._token = self._request("POST", "/auth/token", login, auth=False)["access_token"]
        if self._token is None:
            self._token = self._request("GET", "/auth/token", auth=False)["access_token"]
        return self._token

    def _request(self, method: str, path: str, body: object = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise AirflowStackError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from exc
        return json.loads(payload) if payload else None

    def _exists(self, path: str) -> bool:
        try:
            self._request("GET", path)
        except AirflowStackError as exc:
            if "HTTP 404" in str(exc):
                return False
            raise
        return True

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        """Return DAG ``dag_id`` once the DAG processor has parsed it."""

        def parsed() -> Any:
            try:
                return self._request("GET", f"/api/v2/dags/{dag_id}")
            except AirflowStackError:
                return None

        return _wait_until(parsed, timeout, f"DAG {dag_id} to be parsed")

    def import_pools(self, pools_file: Path) -> list[str]:
        """Create or update the pools of an ``airflow pools import`` file through the REST API."""
        pools = json.loads(Path(pools_file).read_text())
        for name, spec in pools.items():
            body = {
                "slots": spec["slots"],
                "description": spec.get("description"),
                "include_deferred": spec.get("include_deferred", False),
            }
            if self._exists(f"/api/v2/pools/{name}"):
                # Without an update mask the API validates the whole pool, its name included.
                self._request("PATCH", f"/api/v2/pools/{name}", {"pool": name, **body})
            else:
                self._request("POST", "/api/v2/pools", {"name": name, **body})
        return sorted(pools)

    def import_connections(self, connections_file: Path) -> list[str]:
        """Create the connections of an ``airflow connections import`` JSON file that do not exist yet."""
        connections = json.loads(Path(connections_file).read_text())
        created = []
        for conn_id, fields in connections.items():
            if not self._exists(f"/api/v2/connections/{conn_id}"):
                self._request("POST", "/api/v2/connections", {"connection_id": conn_id, **fields})
                created.append(conn_id)
        return created

    def unpause(self, dag_id: str) -> None:
        """Unpause DAG ``dag_id``."""
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, object] | None = None) -> str:
        """Trigger a run of ``dag_id`` with ``conf``; return its run id."""
        run = self._request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": dict(conf or {})}
        )
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """Return run ``run_id`` of ``dag_id`` as the REST API shows it."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Return the first 100 runs of ``dag_id`` as the REST API lists them."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def wait_for_scheduled_run(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        """Return the first run the scheduler created on its own (run type ``scheduled``)."""

        def scheduled() -> Any:
            runs = [run for run in self.dag_runs(dag_id) if run["run_type"] == "scheduled"]
            return runs[0] if runs else None

        return _wait_until(scheduled, timeout, f"a scheduled run of {dag_id}")

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 900,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Return run ``run_id`` of ``dag_id`` once finished, calling ``on_poll(run)`` at each look before."""

        def finished() -> Any:
            try:
                run = self.dag_run(dag_id, run_id)
            except OSError as exc:  # a busy API server missed its read timeout: ask again
                log.warning("Polling run %s failed, asking again: %s", run_id, exc)
                return None
            if run["state"] in FINISHED:
                return run
            if on_poll is not None:
                on_poll(run)
            return None

        return _wait_until(finished, timeout, f"run {run_id} of {dag_id} to finish")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (the API pages at 100, so this reads page after page)."""
        instances: list[dict[str, Any]] = []
        while True:
            page = self._request(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(instances)}",
            )
            instances += page["task_instances"]
            if not page["task_instances"] or len(instances) >= page["total_entries"]:
                return instances

    def task_instance_tries(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> list[dict[str, Any]]:
        """Every try of one task instance (state, start and end), as the REST API shows them."""
        index = f"/{map_index}" if map_index >= 0 else ""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}{index}/tries"
        return list(self._request("GET", path)["task_instances"])

    def set_task_instance_state(
        self, dag_id: str, run_id: str, task_id: str, map_index: int, state: str
    ) -> None:
        """Set one task instance's state (success, failed or skipped), as "Mark as" in the UI does."""
        index = f"/{map_index}" if map_index >= 0 else ""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}{index}"
        self._request("PATCH", path, {"new_state": state})

    def set_dag_run_state(self, dag_id: str, run_id: str, state: str) -> None:
        """Set a run's state (queued, success or failed), as "Mark as" in the UI does.

        A database error (HTTP 500) is asked again up to 4 times: the scheduler updating the same run
        row at that moment makes the API server's update fail, and a second try goes through.
        """
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
        for attempt in range(1, 6):
            try:
                self._request("PATCH", path, {"state": state})
                return
            except AirflowStackError as exc:
                if "HTTP 500" not in str(exc) or attempt == 5:
                    raise
                log.warning("PATCH %s failed (try %d of 5), asking again: %s", path, attempt, exc)
                time.sleep(attempt)
