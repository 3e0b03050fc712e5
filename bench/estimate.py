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
#: The shipped lookback: a steady-state template holds its sessions before the trading date.
LOOKBACK = 5
#: Symbols of the scale section's 1-minute row (``scale_bench.EXTRA_ROWS``), 390 bars a session each.
MINUTE_ROW_SYMBOLS = 1_000
#: Writing a bar of the steady-state template from the simulator's model, once per section: the
#: scale section's fill at 320 symbols took 15.1 s for 191,180 bars on the loaded 2-CPU machine
#: (1,000 symbols' 1-minute fill, 1.54 million bars, 291 s under a load of 11; 2026-12-06).
PREFILL_BAR_SECONDS = 15.1 / 191_180
#: Copying the filled template for a run (1.54 million bars: 2.8 s).
COPY_SECONDS = 3


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


def scale_prefill_bars(sizes: Sequence[int]) -> int:
    """Return the bars the scale section's template is filled with: every row's earlier sessions."""
    intraday = min(max(sizes), PRIORITY_ONE)
    per_session = max(sizes) + intraday * INTRADAY_SESSION_BARS
    if max(sizes) >= MINUTE_ROW_SYMBOLS:  # the 1-minute row: priority 1's 1-minute bars are there
        per_session += (MINUTE_ROW_SYMBOLS - intraday) * 390
    return (LOOKBACK - 1) * per_session


def scale_seconds(repeats: int, sizes: Sequence[int]) -> float:
    """Return the scale section's seconds: the universe and its prefill, then every row ``repeats`` times.

    At steady state a run collects the trading date: a daily bar per symbol and one intraday
    session per priority-1 symbol; the 1-minute row, run once, 1,000 symbols' session (390,000 bars).
    """
    from bench.scale_bench import EXTRA_ROW_REPEATS

    rows = []
    for size in sizes:
        intraday = min(size, PRIORITY_ONE)
        rows.append(run_seconds(size + 3 * intraday, size + intraday * INTRADAY_SESSION_BARS))
    minute_row = MINUTE_ROW_SYMBOLS
    extra = run_seconds(minute_row, minute_row * 390) if max(sizes) >= minute_row else 0.0
    load = max(sizes) * LOAD_SECONDS_PER_SYMBOL
    prefill = scale_prefill_bars(sizes) * PREFILL_BAR_SECONDS
    runs = repeats * len(sizes) + (EXTRA_ROW_REPEATS if extra else 0)
    measured = repeats * sum(rows) + EXTRA_ROW_REPEATS * extra + runs * COPY_SECONDS
    return STACK_SECONDS + load + prefill + measured


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
