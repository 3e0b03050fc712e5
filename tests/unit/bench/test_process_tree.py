"""The benchmarks' CPU figures: each measurement counts its own window's CPU, not earlier ones'."""

import subprocess
import sys

import pytest

from bench.process_tree import TreeMonitor

#: A process that sums ``range(n)`` for each ``n`` it reads, answering "done" after each.
WORKER = "import sys\nfor line in sys.stdin:\n    sum(range(int(line)))\n    print('done', flush=True)\n"


@pytest.fixture
def worker():
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own session: the monitored tree is this process alone
    )
    yield process
    process.kill()
    process.wait()


def work(process: subprocess.Popen, n: int) -> None:
    process.stdin.write(f"{n}\n")
    process.stdin.flush()
    assert process.stdout.readline() == "done\n"


def test_a_second_measurement_with_the_same_monitor_counts_only_its_own_window(worker):
    monitor = TreeMonitor(worker.pid, interval=0.05)
    monitor.start()
    work(worker, 40_000_000)
    busy = monitor.stop()
    monitor.start()
    work(worker, 1)
    idle = monitor.stop()

    assert busy.cpu_seconds >= 0.3
    assert idle.cpu_seconds <= 0.1 * busy.cpu_seconds
    assert sum(idle.cpu_by_component.values()) <= 0.1 * busy.cpu_seconds


#: A server like PostgreSQL's postmaster: each line it reads starts a child (a backend) that sums
#: ``range(n)`` and exits; the server waits for it, so the child's CPU lands in its children's times.
SERVER = (
    "import subprocess, sys\n"
    "for line in sys.stdin:\n"
    "    subprocess.run([sys.executable, '-c', f'sum(range({int(line)}))'], check=True)\n"
    "    print('done', flush=True)\n"
)


@pytest.fixture
def server():
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # not in the monitored tree's session
    )
    yield process
    process.kill()
    process.wait()


def test_a_database_server_s_exited_backends_count_as_the_server_not_as_the_tree(worker, server):
    monitor = TreeMonitor(worker.pid, interval=0.05, server_pids=[server.pid])
    monitor.start()
    work(server, 40_000_000)
    usage = monitor.stop()

    assert usage.server_cpu_seconds >= 0.3
    assert usage.cpu_seconds <= 0.1 * usage.server_cpu_seconds


def test_without_the_server_named_its_backends_are_other_processes(worker, server):
    """Negative control: the same work, the server not named, is others' CPU (the old "contention")."""
    monitor = TreeMonitor(worker.pid, interval=0.05)
    monitor.start()
    work(server, 40_000_000)
    usage = monitor.stop()

    assert usage.server_cpu_seconds == 0
    assert usage.other_cpu_seconds >= 0.3
