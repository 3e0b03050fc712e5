"""Rendering ``bench/results.json`` as ``bench/results.md``: formatting only, no measuring.

``markdown(results)`` is a pure function of the results, so the committed Markdown can be
re-rendered from the committed JSON (a test checks they agree). See docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.code_state import stale_reasons

SECTIONS = ("sim", "daily", "backfill", "dashboard", "scale", "storage", "reads", "charts", "first_run")


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
    """Render the simulator section: one row per repeat, then the median against the goal."""
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


def _spread_text(figures: dict[str, Any] | None, unit: str = "") -> str:
    if not figures or figures.get("median") is None:
        return "–"
    if figures["n"] == 1:
        return f"{figures['median']:g}{unit} (one sample)"
    return f"{figures['median']:g}{unit} ({figures['min']:g}–{figures['max']:g})"


def like_for_like_daily_markdown(section: dict[str, Any]) -> list[str]:
    """Render the daily section's workloads: the per-instance verdicts, then every verified run."""
    from bench.figures import verdict_text

    settings, summary = section["settings"], section["summary"]
    steady = settings.get("steady_state")
    if steady:
        database = (
            f"**steady state**: each repeat on a fresh copy of a template holding the universe and, for "
            f"every active symbol and timeframe collected, the sessions of the {steady['lookback_sessions']}"
            f"-session lookback before the date ({steady['bars']:,} bars, {steady['no_data_sessions']} "
            f"no-data and {steady['short_sessions']} short sessions, written from the simulator's model "
            "in "
            f"{steady['seconds']:g} s), so a run collects the trading date's session, a day's work"
        )
    else:
        database = "each repeat on a fresh copy of the migrated database with the universe loaded"
    lines = [
        f"{settings.get('active_symbols', '?')} active symbols, trading date {settings['date']}, {database}; "
        f"simulator latency "
        f"{settings['latency_ms']} ms; pool `ibkr` {settings['pool_slots']} slots; {settings['executor']}. "
        "Each daily run is followed by Airflow's floor, the trivial DAG at the same number of task "
        "instances; the ratio is wall time per task instance (equal counts, so also per symbol). A run "
        "counts only when every bar its plan asked for is stored, equal to the simulator's served model, "
        "and written by that run"
        + (", and its plan asked for no earlier session the template lacked" if steady else "")
        + ". Figures: median (min–max) of the repeats.",
        "",
    ]
    rows = []
    for workload, conf in settings["workloads"].items():
        figures = summary.get(workload)
        if not figures:
            continue
        rows.append(
            [
                f"{workload} ({_fmt(conf) if conf else 'as shipped'}{', steady state' if steady else ''})",
                verdict_text(figures["verdict"], "x"),
                _spread_text(figures["cpu_ratio_per_instance"], "x"),
                _spread_text(figures["daily_wall_s"], " s"),
                _spread_text(figures["trivial_wall_s"], " s"),
                _spread_text(figures["task_instances"]),
                f"{_spread_text(figures['wall_s_per_instance'], ' s')} / "
                f"{_spread_text(figures['trivial_wall_s_per_instance'], ' s')}",
                _spread_text(figures["wall_s_per_symbol"], " s"),
                _spread_text(figures["ib_requests"]),
                figures["requests_by_bar_size"],
                _spread_text(figures["planned_bars"]),
                f"{figures['verified_repeats']} of {figures['verdict']['n']}",
            ]
        )
    lines += _table(
        [
            "workload",
            "wall per instance vs floor (goal)",
            "CPU per instance vs floor",
            "daily wall",
            "floor wall",
            "task instances",
            "s per instance, daily / floor",
            "daily s per symbol",
            "IB requests",
            "requests by bar size",
            "planned bars",
            "verified",
        ],
        rows,
    )
    run_rows = [
        [
            pair["repeat"],
            pair["workload"],
            f"{pair['daily']['state']} {pair['daily']['wall_s']} s",
            f"{pair['trivial']['state']} {pair['trivial']['wall_s']} s",
            f"{pair['daily']['task_instances']} / {pair['trivial']['task_instances']}",
            pair["ratio_per_instance"],
            pair["daily"]["verification"]["planned_bars"],
            pair["daily"]["verification"]["differences"],
            pair["daily"]["verification"]["preexisting"] + pair["daily"]["bars_before"],
            "yes" if pair["verified"] else "**no**: " + "; ".join(pair["daily"]["verification"]["examples"]),
            f"{pair['trivial']['other_processes_cpu_share']:.0%}"
            f" / {pair['daily']['other_processes_cpu_share']:.0%}",
        ]
        for pair in section["runs"]
    ]
    lines += _table(
        [
            "repeat",
            "workload",
            "daily",
            "floor",
            "task instances (daily / floor)",
            "ratio",
            "planned bars",
            "bars differing or missing",
            "bars stored before",
            "verified",
            "others' CPU share (floor / daily)",
        ],
        run_rows,
    )
    if steady:
        lines += _steady_state_figures(section)
    contention = max(
        max(pair["trivial"]["other_processes_cpu_share"], pair["daily"]["other_processes_cpu_share"])
        for pair in section["runs"]
    )
    if contention > 0.1:
        lines += [
            f"**Contended machine**: processes outside this benchmark took up to {contention:.0%} of the "
            "CPUs during a measured run"
            + (" (PostgreSQL's server, the runs' own writes, not counted among them)" if steady else "")
            + ". The ratios are noisy and the absolute times inflated; rerun on a quiet machine for "
            "figures to quote.",
            "",
        ]
    return lines


def _steady_state_figures(section: dict[str, Any]) -> list[str]:
    """Render, per workload, the steady state's requests and the CPU beside Airflow's tree."""
    settings, summary = section["settings"], section["summary"]
    rows = []
    for workload in settings["workloads"]:
        figures = summary.get(workload)
        if not figures:
            continue
        pairs = [pair for pair in section["runs"] if pair["workload"] == workload]
        intraday = figures.get("intraday_requests") or {}
        rows.append(
            [
                workload,
                f"{figures['steady_state_repeats']} of {len(pairs)}",
                _spread_text(figures["requests_per_symbol_timeframe"]),
                _spread_text(figures["intraday_requests_per_symbol_day"]),
                intraday.get("by_bar_size") or "–",
                intraday.get("symbol_days", "–"),
                _spread_text(_median_of(pairs, "cpu_s")),
                _spread_text(_median_of(pairs, "postgres_cpu_s")),
            ]
        )
    return _table(
        [
            "workload (steady state)",
            "plan asked the date alone",
            "IB requests per symbol-timeframe",
            "intraday requests per symbol-day",
            "by bar size",
            "intraday symbol-days collected",
            "daily run CPU-s, Airflow's tree",
            "daily run CPU-s, PostgreSQL",
        ],
        rows,
    )


def _median_of(pairs: list[dict[str, Any]], figure: str) -> dict[str, Any]:
    from bench.figures import spread

    return spread([pair["daily"][figure] for pair in pairs if pair["daily"].get(figure) is not None], 1)


def daily_markdown(section: dict[str, Any]) -> list[str]:
    """Render the daily section: headline, per-task figures, CPU by component, the runs."""
    if "workloads" in section["settings"]:
        return like_for_like_daily_markdown(section)
    return (
        _daily_headline(section)
        + _daily_per_task(section["summary"])
        + _daily_cpu_by_component(section["summary"])
        + _daily_runs(section["runs"])
        + _daily_footer(section)
    )


def _daily_headline(section: dict[str, Any]) -> list[str]:
    """Render what was measured, the four wall times side by side, and the verdict on the target ratio."""
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
    no_process_figures = [None, None, None, None]

    def tasks(kind: str) -> Any:
        """Task instances of the run (the daily DAG groups symbols beyond IBKR_MAX_MAPPED_TASKS)."""
        counts = [
            pair[kind]["task_instances"] for pair in section["runs"] if pair[kind].get("task_instances")
        ]
        return int(statistics.median(counts)) if counts else None

    lines += _table(
        ["what", "tasks", "wall", "x trivial", "CPU-s", "CPU-s / task", "peak PSS MiB", "peak RSS MiB"],
        [
            [
                f"Airflow's floor: {n} trivial mapped tasks (baseline)",
                tasks("trivial"),
                _minutes(trivial["wall_s"]),
                1.0,
                *_process_figures(trivial),
            ],
            [
                f"daily_market_data, {n} symbols",
                tasks("daily"),
                _minutes(daily["wall_s"]),
                ratios.get("daily"),
                *_process_figures(daily),
            ],
            [
                f"IB's bound: {summary['ib_bound_formula']}",
                None,
                _minutes(summary["ib_bound_s"]),
                ratios.get("ib_bound"),
                *no_process_figures,
            ],
            [
                f"original cron script: {summary['original_formula']}",
                None,
                _minutes(summary["original_s"]),
                ratios.get("original"),
                *no_process_figures,
            ],
        ],
    )
    verdict = "met" if summary["meets_target"] else "**not met**"
    lines.append(
        f"**Daily / trivial = {_fmt(summary['ratio_daily_to_trivial'])}** "
        f"(target <= {summary['target_ratio']}: {verdict}). Every run collected every planned symbol with "
        f"no IB rule broken: {_fmt(summary['all_collected'])}. Idle Airflow burns "
        f"{section['idle_cpu_s_per_s']} CPU-s per second."
    )
    return lines + [""]


def _process_figures(run: dict[str, Any]) -> list[Any]:
    return [run["cpu_s"], run["cpu_s_per_task"], run["peak_pss_mib"], run["peak_rss_mib"]]


def _daily_per_task(summary: dict[str, Any]) -> list[str]:
    trivial, daily = summary["trivial"], summary["daily"]
    figures = [
        ("task duration (Airflow's start to end), s", "mapped_duration_median_s"),
        ("queued to started, s", "mapped_queue_wait_median_s"),
        ("mapped tasks finished per second", "mapped_tasks_per_s"),
        ("trigger to run end as Airflow records it, s", "airflow_queued_to_end_s"),
    ]
    return _table(
        ["per mapped task (median)", "trivial", "daily"],
        [[label, trivial[key], daily[key]] for label, key in figures],
    )


def _daily_cpu_by_component(summary: dict[str, Any]) -> list[str]:
    trivial = summary["trivial"]["cpu_s_by_component"]
    daily = summary["daily"]["cpu_s_by_component"]
    n_tasks = max(summary["symbols"], 1)
    return _table(
        ["CPU-s by component (median)", "trivial", "daily", "daily - trivial, per mapped task"],
        [
            [
                name,
                trivial.get(name),
                daily.get(name),
                round((daily.get(name, 0.0) - trivial.get(name, 0.0)) / n_tasks, 2),
            ]
            for name in sorted(set(trivial) | set(daily))
        ],
    )


def _daily_runs(runs: list[dict[str, Any]]) -> list[str]:
    """Render one row per repeat, then a warning when other processes contended for the CPUs."""
    rows = []
    for i, pair in enumerate(runs):
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
    lines = _table(
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
        for pair in runs
    )
    if contention > 0.1:
        lines += [
            f"**Contended machine**: processes outside this benchmark took up to {contention:.0%} of the "
            "CPUs during a measured run (others' CPU share: the machine's busy CPU minus Airflow's tree "
            "and the benchmark's own process, over wall time x CPUs). Absolute times are inflated and "
            "the ratio is noisier; rerun on a quiet machine for figures to quote.",
            "",
        ]
    return lines


def _daily_footer(section: dict[str, Any]) -> list[str]:
    universe, settings = section["universe"], section["settings"]
    unresolved = universe["unresolved"]
    return [
        f"Universe: {universe['loaded']} symbols loaded, {universe['resolved']} resolved through the "
        f"simulator ({len(unresolved)} unresolved{': ' + ', '.join(unresolved) if unresolved else ''}). "
        f"Stack start to both DAGs parsed: {settings['stack_start_s']} s (not in any figure).",
        "",
    ]


def scale_summary_markdown(section: dict[str, Any]) -> list[str]:
    """Render the scale section's rows: median (min–max) of verified repeats, the 2-minute verdicts."""
    from bench.figures import verdict_text

    settings = section["settings"]
    steady = settings.get("steady_state")
    if steady:
        database = (
            f"a database holding the whole universe at **steady state**: for every row's symbols and "
            f"timeframes, the sessions of the {steady['lookback_sessions']}-session lookback before the date "
            f"({steady['bars']:,} bars, {steady['no_data_sessions']} no-data and {steady['short_sessions']} "
            f"short sessions, written once from the simulator's model in {steady['seconds']:g} s), so a run "
            "collects the trading date's session, a day's work"
        )
    else:
        database = "a database holding the whole universe"
    lines = [
        f"Synthetic symbols beyond the shipped universe, the first N by priority active; trading date "
        f"{settings['date']}; {settings['repeats']} repeats per row, each on a fresh copy of {database}; "
        f"simulator latency {settings['latency_ms']} ms; pool `ibkr` "
        f"{settings['pool_slots']} slots, {settings['in_flight_total']} requests in flight at most. "
        "Timeframe `configured` is the shipped default (daily bars, intraday bars for priority 1). A run "
        "counts only when every planned bar is stored by it, equal to the simulator's served model"
        + (", and its plan asked for no earlier session the template lacked" if steady else "")
        + f". Universe: {section['universe']['loaded']:,} symbols loaded in "
        f"{section['universe']['seconds']} s.",
        "",
    ]
    rows = [
        [
            row["executor"],
            row["symbols"],
            f"{row['timeframe']}{', steady state' if steady else ''}",
            ("**goal** " if row["goal_row"] else "")
            + (
                verdict_text(row["wall_s"], " s")
                if row["timeframe"] == "configured"
                else f"{_spread_text(row['wall_s'], ' s')}, a figure with no goal"
            ),
            _spread_text(row["task_instances"]),
            _spread_text(row["ib_requests"]),
            _spread_text(row["planned_bars"]),
            f"{row['ib_bound_s']:,.1f} s",
            _spread_text(row["cpu_s"]),
            _spread_text(row["peak_pss_mib"]),
            f"{row['verified_repeats']} of {row['wall_s']['n']}",
        ]
        for row in section["summary"]
    ]
    lines += _table(
        [
            "executor",
            "symbols",
            "timeframe",
            "wall, trigger to success",
            "task instances",
            "IB requests",
            "planned bars",
            "IB's bound",
            "CPU-s",
            "peak PSS MiB",
            "verified",
        ],
        rows,
    )
    return lines + [f"![wall time by universe size]({section['plot']})", ""]


def scale_markdown(section: dict[str, Any]) -> list[str]:
    """Render the scale section: one row per executor and symbol count, then the verdict."""
    if "summary" in section:
        return scale_summary_markdown(section)
    settings, runs = section["settings"], section["runs"]
    lines = [
        f"Synthetic symbols beyond the shipped universe; simulator latency {settings['latency_ms']} ms on "
        f"every request; pool `ibkr` {settings['pool_slots']} slots, {settings['in_flight_total']} requests "
        f"in flight at most across them (IB allows 50). Wall time is trigger to success through the REST "
        f"API; CPU is every Airflow process's user+system over that window; memory the peak summed PSS. "
        f"Metadata on PostgreSQL. Universe: {section['universe']['loaded']:,} symbols loaded in "
        f"{section['universe']['seconds']} s.",
        "",
    ]
    rows = [
        [
            run["executor"],
            run["symbols"],
            run["state"],
            f"{run['wall_s']:,.1f} s",
            f"{run['wall_s'] / run['symbols'] * 1000:,.1f} ms" if run["symbols"] else "–",
            f"{run['ib_bound_s']:,.1f} s",
            run["cpu_s"],
            run["task_instances"],
            run["peak_pss_mib"],
            run["checks"]["market_data_rows"],
            run["checks"]["simulator_violations"],
        ]
        for run in runs
    ]
    lines += _table(
        [
            "executor",
            "symbols",
            "state",
            "wall",
            "wall per symbol",
            "IB's bound",
            "CPU-s",
            "task instances",
            "peak PSS MiB",
            "bars stored for the date",
            "IB violations",
        ],
        rows,
    )
    largest = max(runs, key=lambda run: (run["symbols"], run["executor"] == "LocalExecutor"))
    local = [run for run in runs if run["executor"] == "LocalExecutor"]
    biggest_local = max(local, key=lambda run: run["symbols"]) if local else largest
    met = biggest_local["state"] == "success" and biggest_local["wall_s"] <= 120
    lines += [
        "",
        f"**{biggest_local['symbols']:,} symbols on the LocalExecutor: {biggest_local['wall_s']:,.1f} s** "
        f"(goal <= 120 s: **{'met' if met else 'not met'}**; "
        f"IB's bound {biggest_local['ib_bound_s']:,.1f} s).",
        "",
        f"![wall time by universe size]({section['plot']})",
        "",
    ]
    return lines


def first_run_markdown(section: dict[str, Any]) -> list[str]:
    """Render the first runs: one row per repeat, then the verdict on the command-to-summary time."""
    from bench.figures import verdict_text

    rows = [
        [
            i + 1,
            run.get("airflow_up_s"),
            run.get("run_followed_s"),
            run.get("summary_s"),
            run.get("state"),
            run["exit_code"],
            run["bars_before"],
            "yes" if run["verified"] else "**no**",
        ]
        for i, run in enumerate(section["runs"])
    ]
    lines = _table(
        [
            "repeat",
            "Airflow up, s",
            "run followed, s",
            "summary, s",
            "state",
            "exit",
            "bars before",
            "verified",
        ],
        rows,
    )
    return lines + [f"Command to the first run's summary: {verdict_text(section['summary_s'], ' s')}.", ""]


def generic_markdown(value: Any, depth: int = 4) -> list[str]:
    """Render a dict as Markdown: scalars in one two-column table, lists of dicts as tables, dicts nested."""
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
    """Render bench/results.md from the results: the machine, then one part per measured section."""
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
        "dashboard": "Dashboard on a year of 5,000 symbols",
        "scale": "Scale: the daily run by universe size",
        "storage": "Storage: a year of 1-minute bars, partitioned market_data vs one table",
        "reads": "Reads: the read API on a year of 1-minute bars",
        "charts": "Charts: the dashboard's symbol page on a year of 1-minute bars",
        "first_run": "First `make run` on a warm install",
    }
    renderers = {
        "sim": sim_markdown,
        "daily": daily_markdown,
        "scale": scale_markdown,
        "first_run": first_run_markdown,
    }
    for name in SECTIONS:
        entry = results["sections"].get(name)
        if entry is None:
            continue
        lines += [
            f"## {titles[name]}",
            "",
            f"Measured {entry['measured_at']}, in {entry['seconds']:,.0f} s, "
            f"on {entry.get('code', 'an unrecorded commit')}.",
            "",
        ]
        now = results.get("code_now", {}).get(name)
        reasons = stale_reasons(entry.get("code_state"), now) if now else []
        if reasons:
            lines += [
                f"**Stale**: {'; '.join(reasons)}. These figures describe older "
                "code; rerun the section to quote them.",
                "",
            ]
        if "error" in entry:
            lines += ["**Failed:**", "", "```", entry["error"].rstrip(), "```", ""]
            continue
        render = renderers.get(name, generic_markdown)
        lines += render(entry["figures"])
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    """Render bench/results.md again from bench/results.json, marking what the code has left stale."""
    import json
    from pathlib import Path

    from bench.run import RESULTS_JSON, RESULTS_MD, code_now

    results = json.loads(Path(RESULTS_JSON).read_text())
    results["code_now"] = code_now()
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    RESULTS_MD.write_text(markdown(results))
    print(f"wrote {RESULTS_MD.name}; stale sections are marked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
