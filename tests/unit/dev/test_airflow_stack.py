"""The dev stack's environment: what keeps two stacks on one machine apart; how a stack ends."""

import http.server
import json
import signal
import subprocess
import threading
from typing import ClassVar

from ibkr_market_data_dev.airflow_stack import AirflowStack, _group_alive


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


def test_kill_ends_every_process_group_with_sigkill_and_stop_reaps_them(tmp_path):
    stack = AirflowStack(tmp_path)
    # A leader with a child in its group, as standalone has its components: neither ends on its own.
    for name in ("standalone", "worker1"):
        stack.processes[name] = subprocess.Popen(
            ["sh", "-c", "sleep 600 & wait"], start_new_session=True, stdout=subprocess.DEVNULL
        )
    processes = list(stack.processes.values())

    stack.kill_all()
    stack.stop()

    assert [process.returncode for process in processes] == [-signal.SIGKILL] * 2
    assert not any(_group_alive(process.pid) for process in processes)
    assert stack.processes == {}


class _AirflowApi(http.server.BaseHTTPRequestHandler):
    """The two health checks of a started Airflow; records the paths asked, in order."""

    asked: ClassVar[list[str]] = []

    def do_GET(self):
        self.asked.append(self.path)
        body = {
            "/api/v2/monitor/health": {"scheduler": {"status": "healthy"}},
            "/execution/health": {"status": "healthy"},
        }.get(self.path)
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write(json.dumps(body or {}).encode())

    def log_message(self, *args):
        pass


def test_a_started_stack_has_had_its_execution_api_answer_before_the_first_task_asks(tmp_path):
    """The API server builds the execution API on its first request: the stack asks, not a task."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AirflowApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        AirflowStack(tmp_path, port=server.server_address[1]).wait_until_ready(timeout=10)
    finally:
        server.shutdown()
    assert _AirflowApi.asked == ["/api/v2/monitor/health", "/execution/health"]
