"""CPU seconds and peak memory of a process tree (here: ``airflow standalone`` and everything it starts).

Which processes count, how the CPU of exited children is kept and how memory is summed:
docs/benchmarks.md#measuring-a-process-tree.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

MIB = 1024 * 1024


def tree_pids(root_pid: int) -> set[int]:
    """Return the root, its descendants and every process of its session."""
    try:
        session = os.getsid(root_pid)
    except ProcessLookupError:
        return set()
    children: dict[int, list[int]] = {}
    members = {root_pid}
    for process in psutil.process_iter(["ppid"]):
        children.setdefault(process.info["ppid"], []).append(process.pid)
        try:
            if os.getsid(process.pid) == session:
                members.add(process.pid)
        except (ProcessLookupError, PermissionError):
            pass
    stack = [root_pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in members:
                members.add(child)
                stack.append(child)
    return members


def cpu_seconds(pids: set[int]) -> float:
    """User + system of ``pids``, with what each collected from its reaped children."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


#: Process kinds by a piece of their command line, first match wins; the rest is "other".
COMPONENTS = (
    ("scheduler", "airflow scheduler"),
    ("dag-processor", "dag-processor"),
    ("api-server", "api"),
    ("triggerer", "triggerer"),
    ("executor workers", "LocalExecutor"),
    ("task supervisors and tasks", "airflow worker --"),
    ("standalone", "standalone"),
)


def component(pid: int) -> str | None:
    """Return the component a process belongs to; None for one without a command line (a zombie)."""
    try:
        command = " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if not command:
        return None
    for name, needle in COMPONENTS:
        if needle in command:
            return name
    return "other"


def _rollup(pid: int) -> tuple[int, int]:
    """Return (RSS, PSS) in bytes from ``/proc/PID/smaps_rollup``; (0, 0) if the process is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, pss


def descendants(root_pid: int) -> set[int]:
    """Return the root and every process below it (a PostgreSQL server: the postmaster, its backends)."""
    try:
        root = psutil.Process(root_pid)
        return {root_pid} | {child.pid for child in root.children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def postmaster_pid(url: str) -> int:
    """Return the pid of the PostgreSQL server ``url`` names: the parent of the backend serving us.

    :raises psutil.NoSuchProcess: the server runs where this machine cannot see its processes.
    """
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None  # a SELECT without FROM returns its one row
        return psutil.Process(int(row[0])).ppid()


def machine_busy_seconds() -> float:
    """Return the CPU seconds all CPUs spent not idle since boot."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq


def own_cpu_seconds() -> float:
    """Return the CPU of this process (its threads: simulator, sampler) and of its reaped children."""
    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class Usage:
    """What a process tree used over one measurement: CPU, peak memory and processes."""

    cpu_seconds: float
    own_cpu_seconds: float
    #: The PostgreSQL servers' (``TreeMonitor.server_pids``): the runs' writes and Airflow's metadata.
    server_cpu_seconds: float
    other_cpu_seconds: float
    load_average_after: float
    peak_rss_mib: float
    peak_pss_mib: float
    peak_processes: int
    samples: int
    cpu_by_component: dict[str, float]


class TreeMonitor:
    """Samples a process tree's memory on a thread; ``start()``/``stop()`` bracket one measurement."""

    def __init__(
        self, root_pid: int | Sequence[int], interval: float = 0.5, server_pids: Sequence[int] = ()
    ) -> None:
        #: One tree (standalone's), or several (components started apart, as for Celery).
        self.root_pids = [root_pid] if isinstance(root_pid, int) else list(root_pid)
        #: The PostgreSQL servers the runs write to (their postmasters): the run's own work, counted
        #: apart from the tree and from other processes.
        self.server_pids = list(server_pids)
        self._server_before = 0.0
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu_before = self._own_before = self._busy_before = 0.0
        self._peak_rss = self._peak_pss = 0
        self._peak_processes = self._samples = 0
        # pid -> (component, own CPU at the first sample, own CPU at the latest sample)
        self._own_cpu: dict[int, tuple[str, float, float]] = {}

    def _pids(self) -> set[int]:
        return set().union(*(tree_pids(pid) for pid in self.root_pids))

    def server_cpu_now(self) -> float:
        """Return the CPU seconds the servers have used so far, exited backends included."""
        return cpu_seconds(set().union(*(descendants(pid) for pid in self.server_pids)))

    def cpu_now(self) -> float:
        """Return the CPU seconds (user + system) the tree's processes have used so far."""
        return cpu_seconds(self._pids())

    def _sample(self) -> None:
        pids = self._pids()
        rss = pss = 0
        for pid in pids:
            process_rss, process_pss = _rollup(pid)
            rss += process_rss
            pss += process_pss
            try:
                times = psutil.Process(pid).cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            own = times.user + times.system
            # Born during the measurement: all its CPU counts (times start at 0 after fork).
            kind, first = "other", own if self._samples == 0 else 0.0
            if pid in self._own_cpu:
                kind, first, _ = self._own_cpu[pid]
            # Classified at every sample: a task process carries its executor worker's title until
            # the task runner renames it; an exited one (a zombie) keeps its last class.
            self._own_cpu[pid] = (component(pid) or kind, first, own)
        self._peak_rss = max(self._peak_rss, rss)
        self._peak_pss = max(self._peak_pss, pss)
        self._peak_processes = max(self._peak_processes, len(pids))
        self._samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        """Open a fresh measurement window and start sampling on a thread."""
        self._peak_rss = self._peak_pss = self._peak_processes = self._samples = 0
        # A fresh window: what earlier measurements sampled must not count again.
        self._own_cpu = {}
        self._stop.clear()
        self._cpu_before = self.cpu_now()
        self._own_before = own_cpu_seconds()
        self._server_before = self.server_cpu_now()
        self._busy_before = machine_busy_seconds()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="tree-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> Usage:
        """Stop sampling and return what the tree used since :meth:`start`."""
        cpu_after = self.cpu_now()
        own = own_cpu_seconds() - self._own_before
        server = self.server_cpu_now() - self._server_before
        busy = machine_busy_seconds() - self._busy_before
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._sample()
        by_component: dict[str, float] = {}
        for kind, first, last in self._own_cpu.values():
            by_component[kind] = by_component.get(kind, 0.0) + last - first
        sampled = sum(by_component.values())
        # Two estimates, each low in its own way: the readings miss a child that exited without
        # being waited for (auto-reaped), the samples miss processes born and gone between two
        # samples and the last moments of those that exited. The larger is the better.
        total = max(cpu_after - self._cpu_before, sampled)
        by_component["unsampled (short-lived, exited)"] = total - sampled
        return Usage(
            cpu_seconds=round(total, 1),
            own_cpu_seconds=round(own, 1),
            server_cpu_seconds=round(server, 1),
            other_cpu_seconds=round(max(0.0, busy - own - total - server), 1),
            load_average_after=round(os.getloadavg()[0], 1),
            peak_rss_mib=round(self._peak_rss / MIB),
            peak_pss_mib=round(self._peak_pss / MIB),
            peak_processes=self._peak_processes,
            samples=self._samples,
            cpu_by_component={kind: round(cpu, 1) for kind, cpu in sorted(by_component.items())},
        )
