"""``make bench ESTIMATE=1``: how long each section will take, before running any.

From the section's last measured duration in ``bench/results.json`` where the section ran as it
runs now, else from a model of its runs. See docs/benchmarks.md#how-long.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.render import SECTIONS

#: Seconds of a section with no usable earlier measurement (measured once on the 2-CPU machine).
FIXED_SECONDS = {
    "sim": 5,
    "backfill": 65,
    "dashboard": 900,
    "storage": 600,
    "reads": 900,
    "charts": 240,
    "first_run": 180,
}
#: Starting Airflow and loading the shipped universe.
STACK_SECONDS = 60
#: A daily run's fixed cost under the scheduler (resolve_date, plan, summary), and its cost per
#: task instance beyond it (grouping.INSTANCE_SECONDS, with the floor run after it).
RUN_SECONDS = 15
INSTANCE_SECONDS = 0.3
#: Loading synthetic symbols through the simulator, per symbol (5,000 took 112 s).
LOAD_SECONDS_PER_SYMBOL = 0.023
#: The IB latency a run waits for per request, over the 48 requests in flight.
REQUEST_SECONDS = 0.2 / 48
#: Serving, decoding, storing and verifying a bar on the 2-CPU machine: the default workload's
#: first fill took 48 s more than daily bars alone for 237,380 more bars (2026-12-06).
BAR_SECONDS = 48 / 237_380
#: Priority-1 symbols of the shipped universe: intraday bars at the configured timeframes.
PRIORITY_ONE = 104
#: Intraday bars of a regular session: 390 1-minute, 78 5-minute and 7 hourly bars.
INTRADAY_SESSION_BARS = 390 + 78 + 7
#: Sessions a run on an empty database fills (the shipped lookback).
LOOKBACK = 5


def _groups(items: int) -> int:
    from ibkr_market_data.grouping import group_count, in_flight_per_connection
    from ibkr_market_data.settings import IBKR_POOL_SLOTS

    work = items * 0.2
    return group_count(items, work, IBKR_POOL_SLOTS, in_flight_per_connection(IBKR_POOL_SLOTS), environ={})


def run_seconds(items: int, bars: int = 0) -> float:
    """Return a daily run's modelled seconds for ``items`` requests fetching ``bars`` bars."""
    instances = (_groups(items) + 4) * INSTANCE_SECONDS
    return RUN_SECONDS + instances + items * REQUEST_SECONDS + bars * BAR_SECONDS


def daily_seconds(repeats: int, symbols: int) -> float:
    """Return the daily section's seconds: two workloads, each a daily run and its floor, per repeat.

    At steady state a run collects the trading date: one intraday session per priority-1 symbol.
    """
    intraday = min(symbols, PRIORITY_ONE)
    default_items = symbols + 3 * intraday
    pair = run_seconds(default_items, intraday * INTRADAY_SESSION_BARS) + run_seconds(symbols)
    floor = 2 * (RUN_SECONDS + (_groups(symbols) + 4) * INSTANCE_SECONDS)
    return STACK_SECONDS + repeats * (pair + floor)


def scale_seconds(repeats: int, sizes: Sequence[int]) -> float:
    """Return the scale section's seconds: the universe, then every row ``repeats`` times.

    Each run starts on an empty database: the priority-1 symbols fill their lookback's intraday
    sessions, and the 1-minute row, run once, 1,000 symbols' (1.95 million bars).
    """
    from bench.scale_bench import EXTRA_ROW_REPEATS

    fill = PRIORITY_ONE * LOOKBACK * INTRADAY_SESSION_BARS
    rows = [run_seconds(size + 3 * LOOKBACK * PRIORITY_ONE, size * LOOKBACK + fill) for size in sizes]
    extra = run_seconds(1_000 * LOOKBACK, 1_000 * LOOKBACK * 390) if max(sizes) >= 1_000 else 0.0
    load = max(sizes) * LOAD_SECONDS_PER_SYMBOL
    return STACK_SECONDS + load + repeats * sum(rows) + EXTRA_ROW_REPEATS * extra


def estimates(
    only: Sequence[str],
    repeats: int,
    scale_sizes: Sequence[int] | None,
    daily_symbols: int | None,
    previous: Mapping[str, Any],
) -> dict[str, tuple[float, str]]:
    """Return, per section asked for, its estimated seconds and where the estimate comes from."""
    from bench.scale_bench import SIZES

    measured = previous.get("sections", {})
    result: dict[str, tuple[float, str]] = {}
    for name in SECTIONS:
        if name not in only:
            continue
        if name == "daily":
            result[name] = (daily_seconds(repeats, daily_symbols or 320), "model of its runs")
        elif name == "scale":
            result[name] = (scale_seconds(repeats, scale_sizes or SIZES), "model of its runs")
        elif "seconds" in measured.get(name, {}) and "error" not in measured[name]:
            result[name] = (
                float(measured[name]["seconds"]),
                f"last measured {measured[name]['measured_at']}",
            )
        else:
            result[name] = (float(FIXED_SECONDS.get(name, 300)), "fixed guess")
    return result


def estimate_text(
    only: Sequence[str],
    repeats: int,
    scale_sizes: Sequence[int] | None,
    daily_symbols: int | None,
    previous: Mapping[str, Any],
) -> str:
    """Return the estimates as a table and a total, for the terminal."""
    table = estimates(only, repeats, scale_sizes, daily_symbols, previous)
    width = max((len(name) for name in table), default=7)
    lines = [f"{'section':<{width}}  {'estimate':>10}  from"]
    for name, (seconds, source) in table.items():
        lines.append(f"{name:<{width}}  {_duration(seconds):>10}  {source}")
    total = sum(seconds for seconds, _ in table.values())
    lines.append(f"{'total':<{width}}  {_duration(total):>10}  (the machine's other load comes on top)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"
