"""``make bench``: run the benchmark sections, write ``bench/results.md`` and ``bench/results.json``.

Sections (``--only`` picks some, comma-separated):

* ``sim``: the TWS simulator's throughput (``tws_simulator.bench``), historical
  requests answered per second; goal >= 1,000.
* ``daily``: the daily run of the whole universe under the real scheduler against the simulator,
  beside a DAG of as many trivial mapped tasks (Airflow's floor, measured in the same run), IB's
  bound and the original cron script's schedule (``bench.daily_bench``).
* ``backfill``: ``bench.backfill_bench.run(results)``, when that module exists.

Every figure is reported beside a baseline measured in the same run, as a ratio; with repeats,
medians. A section not run keeps its previous figures (with their own date) in the results files,
so ``--only sim`` does not erase the daily figures the README quotes. Speed is measured here,
never asserted in tests.

    PYTHONPATH=include .venv/bin/python -m bench.run [--only daily,sim,backfill] [--repeats N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "results.md"
RESULTS_JSON = BENCH_DIR / "results.json"
SECTIONS = ("sim", "daily", "backfill")
SIM_GOAL_REQUESTS_PER_S = 1_000


# -- machine ------------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        mem_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration, ValueError):
        mem_kib = 0

    def version(distribution: str) -> str | None:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "airflow": version("apache-airflow"),
        "providers_postgres": version("apache-airflow-providers-postgres"),
        "ib_insync": version("ib_insync"),
        "platform": platform.platform(),
    }


def code_state() -> str:
    """The commit measured, and the files that differed from it (outside bench/): what the figures describe."""
    import subprocess

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=BENCH_DIR.parent, capture_output=True, text=True, check=False
        )
        return result.stdout.rstrip("\n")

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        if not line[3:].startswith("bench/")
    ]
    return f"{commit} + uncommitted changes to {', '.join(changed)}" if changed else commit


# -- sections -----------------------------------------------------------------------------------


def run_sim(repeats: int) -> dict[str, Any]:
    from ibkr_market_data_dev.simulated_ib import shipped_listings
    from tws_simulator.bench import measure_throughput

    measurements = []
    for repeat in range(repeats):
        measurement = measure_throughput(shipped_listings())
        log.info("Simulator repeat %d: %s requests/s", repeat + 1, measurement["requests_per_second"])
        measurements.append(measurement)
    median = statistics.median(m["requests_per_second"] for m in measurements)
    return {
        "repeats": measurements,
        "median_requests_per_s": round(median, 1),
        "goal_requests_per_s": SIM_GOAL_REQUESTS_PER_S,
        "ratio_to_goal": round(median / SIM_GOAL_REQUESTS_PER_S, 2),
        "meets_goal": median >= SIM_GOAL_REQUESTS_PER_S,
    }


def run_daily(repeats: int, latency_ms: int, keep: bool) -> dict[str, Any]:
    from bench import daily_bench

    return daily_bench.run(repeats=repeats, latency_ms=latency_ms, keep=keep)


def run_backfill(results: dict[str, Any]) -> dict[str, Any] | None:
    if importlib.util.find_spec("bench.backfill_bench") is None:
        log.info("bench/backfill_bench.py is not there yet: no backfill section")
        return None
    module = importlib.import_module("bench.backfill_bench")
    return dict(module.run(results))


# -- Markdown -----------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "–"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _minutes(seconds: float) -> str:
    return f"{seconds:,.1f} s ({seconds / 60:,.1f} min)" if seconds >= 120 else f"{seconds:,.1f} s"


def sim_markdown(section: dict[str, Any]) -> list[str]:
    rows = [
        [
            i + 1,
            m["connections"],
            m["in_flight_per_connection"],
            m["requests"],
            m["seconds"],
            m["requests_per_second"],
            m["errors"],
            m["rule_violations"],
        ]
        for i, m in enumerate(section["repeats"])
    ]
    lines = _table(
        [
            "repeat",
            "connections",
            "in flight each",
            "requests",
            "seconds",
            "requests/s",
            "errors",
            "violations",
        ],
        rows,
    )
    lines.append(
        f"Median **{section['median_requests_per_s']:,.0f} requests/s**, "
        f"{section['ratio_to_goal']:.1f}x the goal of {section['goal_requests_per_s']:,}/s "
        f"(met: {_fmt(section['meets_goal'])}). The client shares the simulator's interpreter, so this is a "
        "lower bound."
    )
    return lines + [""]


def daily_markdown(section: dict[str, Any]) -> list[str]:
    summary, settings = section["summary"], section["settings"]
    trivial, daily = summary["trivial"], summary["daily"]
    n = summary["symbols"]
    ratios = summary.get("ratios_vs_trivial", {})
    repeats = len(section["runs"])
    lines = [
        f"{n} symbols planned; simulator latency {settings['latency_ms']} ms on every request; pool "
        f"`ibkr` {settings['pool_slots']} slots, parallelism {settings['parallelism']}; "
        f"{settings['executor']}. Wall time is trigger to success as seen through the REST API; CPU is "
        "the whole Airflow process tree's user+system over that window; memory is the peak of the "
        "tree's summed PSS (RSS beside it) sampled every 0.5 s. "
        + (f"Medians of {repeats} repeats." if repeats > 1 else "One repeat."),
        "",
    ]
    lines += _table(
        ["what", "tasks", "wall", "x trivial", "CPU-s", "CPU-s / task", "peak PSS MiB", "peak RSS MiB"],
        [
            [
                f"Airflow's floor: {n} trivial mapped tasks (baseline)",
                n + 2,
                _minutes(trivial["wall_s"]),
                1.0,
                trivial["cpu_s"],
                trivial["cpu_s_per_task"],
                trivial["peak_pss_mib"],
                trivial["peak_rss_mib"],
            ],
            [
                f"daily_market_data, {n} symbols",
                n + 3,
                _minutes(daily["wall_s"]),
                ratios.get("daily"),
                daily["cpu_s"],
                daily["cpu_s_per_task"],
                daily["peak_pss_mib"],
                daily["peak_rss_mib"],
            ],
            [
                f"IB's bound: {summary['ib_bound_formula']}",
                None,
                _minutes(summary["ib_bound_s"]),
                ratios.get("ib_bound"),
                None,
                None,
                None,
                None,
            ],
            [
                f"original cron script: {summary['original_formula']}",
                None,
                _minutes(summary["original_s"]),
                ratios.get("original"),
                None,
                None,
                None,
                None,
            ],
        ],
    )
    verdict = "met" if summary["meets_target"] else "**not met**"
    lines.append(
        f"**Daily / trivial = {_fmt(summary['ratio_daily_to_trivial'])}** (target <= {summary['target_ratio']}: "
        f"{verdict}). Every run collected every planned symbol with no IB rule broken: "
        f"{_fmt(summary['all_collected'])}. Idle Airflow burns {section['idle_cpu_s_per_s']} CPU-s per second."
    )
    lines.append("")
    lines += _table(
        ["per mapped task (median)", "trivial", "daily"],
        [
            [
                "task duration (Airflow's start to end), s",
                trivial["mapped_duration_median_s"],
                daily["mapped_duration_median_s"],
            ],
            [
                "queued to started, s",
                trivial["mapped_queue_wait_median_s"],
                daily["mapped_queue_wait_median_s"],
            ],
            ["mapped tasks finished per second", trivial["mapped_tasks_per_s"], daily["mapped_tasks_per_s"]],
            [
                "trigger to run end as Airflow records it, s",
                trivial["airflow_queued_to_end_s"],
                daily["airflow_queued_to_end_s"],
            ],
        ],
    )
    components = sorted(set(trivial["cpu_s_by_component"]) | set(daily["cpu_s_by_component"]))
    n_tasks = max(n, 1)
    lines += _table(
        ["CPU-s by component (median)", "trivial", "daily", "daily - trivial, per mapped task"],
        [
            [
                name,
                trivial["cpu_s_by_component"].get(name),
                daily["cpu_s_by_component"].get(name),
                round(
                    (
                        daily["cpu_s_by_component"].get(name, 0.0)
                        - trivial["cpu_s_by_component"].get(name, 0.0)
                    )
                    / n_tasks,
                    2,
                ),
            ]
            for name in components
        ],
    )
    rows = []
    for i, pair in enumerate(section["runs"]):
        checks = pair["daily"]["checks"]
        rows.append(
            [
                i + 1,
                pair["date"],
                " then ".join(pair["order"]),
                pair["planned_symbols"],
                f"{pair['trivial']['state']} {pair['trivial']['wall_s']} s",
                f"{pair['daily']['state']} {pair['daily']['wall_s']} s",
                pair["ratio_daily_to_trivial"],
                checks["market_data_rows"],
                checks["ib_historical_requests"],
                checks["collection_log_statuses"],
                checks["simulator_violations"],
                pair["daily"]["retried_tasks"],
                f"{pair['trivial']['other_processes_cpu_share']:.0%}"
                f" / {pair['daily']['other_processes_cpu_share']:.0%}",
            ]
        )
    lines += _table(
        [
            "repeat",
            "trading date",
            "order",
            "planned",
            "trivial",
            "daily",
            "ratio",
            "bars stored",
            "IB requests",
            "collection_logs",
            "IB violations",
            "retried tasks",
            "others' CPU share (trivial / daily)",
        ],
        rows,
    )
    contention = max(
        max(pair["trivial"]["other_processes_cpu_share"], pair["daily"]["other_processes_cpu_share"])
        for pair in section["runs"]
    )
    if contention > 0.1:
        lines += [
            f"**Contended machine**: processes outside this benchmark took up to {contention:.0%} of the "
            "CPUs during a measured run (others' CPU share: the machine's busy CPU minus Airflow's tree "
            "and the benchmark's own process, over wall time x CPUs). Absolute times are inflated and "
            "the ratio is noisier; rerun on a quiet machine for figures to quote.",
            "",
        ]
    universe = section["universe"]
    lines.append(
        f"Universe: {universe['loaded']} symbols loaded, {universe['resolved']} resolved through the simulator "
        f"({len(universe['unresolved'])} unresolved{': ' + ', '.join(universe['unresolved']) if universe['unresolved'] else ''}). "
        f"Stack start to both DAGs parsed: {settings['stack_start_s']} s (not in any figure)."
    )
    return lines + [""]


def generic_markdown(value: Any, depth: int = 4) -> list[str]:
    """Any dict as Markdown: scalars in one two-column table, lists of dicts as tables, dicts nested."""
    if not isinstance(value, dict):
        return [_fmt(value), ""]
    scalars = [
        [key, item]
        for key, item in value.items()
        if not isinstance(item, dict | list)
        or (isinstance(item, list) and not any(isinstance(v, dict) for v in item))
    ]
    lines = _table(["figure", "value"], scalars) if scalars else []
    for key, item in value.items():
        if isinstance(item, dict):
            lines += [f"{'#' * depth} {key}", ""] + generic_markdown(item, min(depth + 1, 6))
        elif isinstance(item, list) and item and all(isinstance(v, dict) for v in item):
            columns: list[str] = []
            for row in item:
                columns += [column for column in row if column not in columns]
            lines += [f"{'#' * depth} {key}", ""]
            lines += _table(columns, [[row.get(column) for column in columns] for row in item])
    return lines


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/run.py`); the raw figures are in `bench/results.json`.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB, Python "
        f"{machine['python']}, Airflow {machine['airflow']}, providers-postgres "
        f"{machine['providers_postgres']}, ib_insync {machine['ib_insync']}; {machine['platform']}.",
        "",
    ]
    titles = {
        "sim": "Simulator throughput",
        "daily": "Daily run vs Airflow's floor",
        "backfill": "Backfill",
    }
    renderers = {"sim": sim_markdown, "daily": daily_markdown}
    for name in SECTIONS:
        entry = results["sections"].get(name)
        if entry is None:
            continue
        lines += [
            f"## {titles[name]}",
            "",
            f"Measured {entry['measured_at']}, in {entry['seconds']:,.0f} s, on {entry.get('code', 'an unrecorded commit')}.",
            "",
        ]
        if "error" in entry:
            lines += ["**Failed:**", "", "```", entry["error"].rstrip(), "```", ""]
            continue
        render = renderers.get(name, generic_markdown)
        lines += render(entry["figures"])
    return "\n".join(lines).rstrip() + "\n"


# -- main ---------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=1, help="daily section repeats (each ~3 min)")
    parser.add_argument("--sim-repeats", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=200, help="simulator latency on every request")
    parser.add_argument("--keep", action="store_true", help="keep the daily section's Airflow home and logs")
    options = parser.parse_args(argv)
    only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # A TERM (CI cancelling the job) unwinds like Ctrl-C, so every section cleans up after itself.
    signal.signal(signal.SIGTERM, _interrupt)

    results: dict[str, Any] = {"sections": {}}
    if RESULTS_JSON.exists():
        try:
            results = json.loads(RESULTS_JSON.read_text())
        except ValueError:
            log.warning("%s is not JSON; starting afresh", RESULTS_JSON)
    results["machine"] = machine_facts()
    results.setdefault("sections", {})
    failed = False
    for name in SECTIONS:
        if name not in only:
            continue
        log.info("Section %s", name)
        started = time.perf_counter()
        entry: dict[str, Any] = {
            "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "code": code_state(),
        }
        try:
            if name == "sim":
                figures = run_sim(options.sim_repeats)
            elif name == "daily":
                figures = run_daily(options.repeats, options.latency_ms, options.keep)
            else:
                figures = run_backfill(results)
                if figures is None:
                    continue
            entry["figures"] = figures
        except Exception:
            failed = True
            entry["error"] = traceback.format_exc()
            log.error("Section %s failed:\n%s", name, entry["error"])
        entry["seconds"] = round(time.perf_counter() - started, 1)
        results["sections"][name] = entry
        _write(results)  # after every section: a later failure keeps the earlier figures
    text = markdown(results)
    print(text)
    return 1 if failed else 0


def _write(results: dict[str, Any]) -> None:
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    RESULTS_MD.write_text(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
