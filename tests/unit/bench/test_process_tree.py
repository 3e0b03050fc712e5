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
