"""``make bench``: run the benchmark sections, write ``bench/results.md`` and ``bench/results.json``.

``--only`` picks sections (comma-separated); a section not run keeps its previous figures. The
sections and the rules every figure follows: docs/benchmarks.md#sections.
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

from bench.render import SECTIONS, markdown

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "results.md"
RESULTS_JSON = BENCH_DIR / "results.json"

SIM_GOAL_REQUESTS_PER_S = 1_000


# -- machine ------------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    """Return the machine the figures come from: CPUs, memory, Python and package versions."""
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


def code_state(section: str = "daily") -> str:
    """Return the commit measured and the uncommitted changes to the product code ``section`` measures."""
    from bench.code_state import describe, paths_of, snapshot

    return describe(snapshot(paths_of(section)))


def code_now(sections: list[str] | tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    """Return the product code each section measures, as it is now: what ``render`` marks stale against."""
    from bench.code_state import paths_of, snapshot

    return {name: snapshot(paths_of(name)) for name in sections}


# -- sections -----------------------------------------------------------------------------------


def run_sim(repeats: int) -> dict[str, Any]:
    """Measure the simulator's throughput ``repeats`` times; return each repeat and the median."""
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


def run_daily(repeats: int, latency_ms: int, keep: bool, symbols: int | None) -> dict[str, Any]:
    """Run the daily section: the daily DAG beside Airflow's floor under a real scheduler."""
    from bench import daily_bench

    return daily_bench.run(repeats=repeats, latency_ms=latency_ms, keep=keep, symbols=symbols)


def run_backfill(results: dict[str, Any]) -> dict[str, Any] | None:
    """Run the backfill section; None when bench/backfill_bench.py is not there."""
    if importlib.util.find_spec("bench.backfill_bench") is None:
        log.info("bench/backfill_bench.py is not there yet: no backfill section")
        return None
    module = importlib.import_module("bench.backfill_bench")
    return dict(module.run(results))


# -- main ---------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the sections asked for, writing the results after each; return 1 if any section failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument(
        "--repeats", type=int, default=3, help="repeats of the daily and scale sections (a verdict needs 3)"
    )
    parser.add_argument(
        "--daily-symbols", type=int, default=None, help="the daily section's active symbols (default: all)"
    )
    parser.add_argument(
        "--scale-sizes", default=None, help="the scale section's sizes, comma-separated (default 320..10,000)"
    )
    parser.add_argument("--estimate", action="store_true", help="print how long each section takes; run none")
    parser.add_argument("--sim-repeats", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=200, help="simulator latency on every request")
    parser.add_argument("--keep", action="store_true", help="keep the daily section's Airflow home and logs")
    parser.add_argument(
        "--reads-symbols", type=int, default=320, help="symbols of the reads section's year of 1-minute bars"
    )
    parser.add_argument(
        "--charts-symbols",
        type=int,
        default=320,
        help="symbols of the charts section's year of 1-minute bars",
    )
    options = parser.parse_args(argv)
    only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if options.repeats < 1:
        parser.error(f"argument --repeats: {options.repeats} is not a number of repeats (1 or more)")
    scale_sizes = _sizes(parser, options.scale_sizes)
    if options.estimate:
        from bench.estimate import estimate_text

        previous = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
        print(estimate_text(only, options.repeats, scale_sizes, options.daily_symbols, previous))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The daily and scale sections measure the shipped default workload (daily bars for every
    # symbol, intraday bars for priority 1): IBKR_INTRADAY_MAX_PRIORITY is left as the user has it.
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
        from bench.code_state import describe, paths_of, snapshot

        measured_code = snapshot(paths_of(name))
        entry: dict[str, Any] = {
            "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "code": describe(measured_code),
            "code_state": measured_code,
        }
        try:
            if name == "sim":
                figures = run_sim(options.sim_repeats)
            elif name == "daily":
                figures = run_daily(options.repeats, options.latency_ms, options.keep, options.daily_symbols)
            elif name == "dashboard":
                from bench import dashboard_bench

                figures = dashboard_bench.run()
            elif name == "scale":
                from bench import scale_bench

                figures = scale_bench.run(sizes=scale_sizes or scale_bench.SIZES, repeats=options.repeats)
            elif name == "storage":
                from bench import storage_bench

                figures = storage_bench.run()
            elif name == "reads":
                from bench import reads_bench

                figures = reads_bench.run(options.reads_symbols)
            elif name == "charts":
                from bench import charts_bench

                figures = charts_bench.run(options.charts_symbols)
            elif name == "first_run":
                from bench import first_run_bench

                figures = first_run_bench.run()
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


def _sizes(parser: argparse.ArgumentParser, text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        parser.error(f"argument --scale-sizes: {text!r} is not a comma-separated list of symbol counts")
    return sizes


def _write(results: dict[str, Any]) -> None:
    results["code_now"] = code_now()
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    RESULTS_MD.write_text(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
