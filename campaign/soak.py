"""``make soak``: the daily DAG over consecutive trading dates, faults drawn from the campaign at random.

Each date's run goes through the real scheduler with the simulator's clock on that evening; at the
end the database is compared with what IB serves, every bar of every timeframe. Reproducible from
the printed seed; the report goes to ``campaign/soak.md``. See docs/fault-campaign.md#the-soak.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field

import psycopg

from campaign import invariants, observe
from campaign.run import CAMPAIGN_DIR, Campaign, Outcome, workload_text
from campaign.scenarios import SCENARIOS, Scenario
from ibkr_market_data.settings import CLOSE_DELAY_MINUTES
from tws_simulator.testing import SettableClock

log = logging.getLogger("campaign.soak")

#: The first date the soak may run; 2025-03-03 puts the US change to daylight saving inside 20 dates.
FIRST_DATE = dt.date(2025, 3, 3)
#: Latency of every simulator answer: shorter than the campaign's, so 20 dates fit an hour or so.
SOAK_LATENCY_MS = 100


@dataclass
class DateResult:
    """One trading date of the soak: the fault drawn, the proof it fired, and what its run left."""

    date: str
    fault: str
    fired: str
    fired_ok: bool
    first_run: str
    tasks_retried: int
    bars_lost_at_run_end: int
    silent: int
    needless_requests: int
    fake_revisions: int
    unfinished: int
    ib_rules_broken: int
    healed_by: str = ""
    seconds_to_recover: float | None = None


@dataclass
class _OpenLoss:
    """Keys a run left wrong, waiting for a later run of the soak to mend them."""

    index: int
    keys: set[invariants.Key]
    triggered_at: float


@dataclass
class SoakReport:
    """The soak's results, as ``campaign/soak.json`` holds them."""

    seed: int
    days: int
    symbols: list[str]
    workload: str
    executor: str
    measured_at: str
    code: str
    dates: list[DateResult] = field(default_factory=list)
    bars_compared: int = 0
    differences: list[str] = field(default_factory=list)
    fake_revisions: int = 0
    minutes: float = 0.0
    stopped_early: str = ""


def trading_dates(campaign: Campaign, first: dt.date, days: int) -> list[dt.date]:
    """Return ``days`` consecutive dates from ``first`` on which an exchange of the soak's symbols trades."""
    model = campaign.simulator.model
    sessions: set[dt.date] = set()
    for entry in campaign.universe:
        sessions.update(model.sessions(entry.symbol, first, first + dt.timedelta(days=3 * days + 14)))
    return sorted(sessions)[:days]


def run_moment(campaign: Campaign, date: dt.date) -> dt.datetime:
    """Return when the daily run of ``date`` is due: the last close among its exchanges, plus the delay."""
    model = campaign.simulator.model
    closes = []
    for entry in campaign.universe:
        index = model.session_index(model.contract(entry.symbol))
        position = index.position(date)
        if position is not None:
            closes.append(index.closes[position])
    return dt.datetime.fromtimestamp(max(closes), dt.UTC) + dt.timedelta(minutes=CLOSE_DELAY_MINUTES)


def draw(rng: random.Random, catalogue: list[Scenario], last: bool) -> Scenario:
    """Draw one scenario of the catalogue; the last date gets none (no later run would heal it)."""
    return catalogue[0] if last else rng.choice(catalogue)


def soak(days: int, seed: int, symbols: int, executor: str, max_minutes: float) -> SoakReport:
    """Run the soak and return its report."""
    from bench.run import code_state

    rng = random.Random(seed)
    started = time.monotonic()
    clock = SettableClock(dt.datetime.combine(FIRST_DATE, dt.time(), dt.UTC))
    catalogue = [s for s in SCENARIOS if executor in s.executors and s.in_soak]
    with Campaign(symbols, SOAK_LATENCY_MS, 10, executor, clock=clock) as campaign:
        dates = trading_dates(campaign, FIRST_DATE, days)
        report = SoakReport(
            seed=seed,
            days=days,
            symbols=[s.symbol for s in campaign.universe],
            workload=workload_text(campaign),
            executor=executor,
            measured_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            code=code_state(),
        )
        open_losses: list[_OpenLoss] = []
        every_key: set[invariants.Key] = set()
        every_run: list[tuple[str, str]] = []
        for index, date in enumerate(dates):
            if (time.monotonic() - started) / 60 > max_minutes:
                report.stopped_early = (
                    f"stopped after {index} dates: the {max_minutes:g}-minute budget is spent"
                )
                break
            clock.set(run_moment(campaign, date))
            scenario = draw(rng, catalogue, last=index == len(dates) - 1)
            triggered_at = time.time()
            outcome = campaign.run(scenario, date, fresh=index == 0, rerun=False)
            campaign.served_moments.append(clock())
            every_run += campaign.last_runs
            keys = _window(campaign, date)
            every_key |= keys
            report.dates.append(_date_result(date, scenario, outcome))
            open_losses = _heal(campaign, report, open_losses, index, keys, outcome, triggered_at)
            log.info("Soak %s/%s %s: %s", index + 1, len(dates), date, asdict(report.dates[-1]))
        with psycopg.connect(campaign.market_db) as conn:
            every_key |= observe.plan_keys(conn, every_run)
            served = observe.served_bars(campaign.simulator.served, every_key, clock())
            snapshot = observe.db_snapshot(conn, campaign.simulator.model, every_key)
            revisions = observe.revisions(conn, campaign.simulator.model)
        versions = observe.served_versions(
            campaign.simulator.served, {r.key for r in revisions}, campaign.served_moments
        )
        report.bars_compared = sum(len(bars) for bars in served.expected.bars.values())
        report.differences = [str(d) for d in invariants.lost(served.expected, snapshot)]
        report.fake_revisions = len(invariants.fake_revisions(revisions, versions))
    report.minutes = round((time.monotonic() - started) / 60, 1)
    return report


def _window(campaign: Campaign, date: dt.date) -> set[invariants.Key]:
    return observe.window_keys(
        campaign.simulator.model,
        [observe.Symbol(s.symbol, s.priority) for s in campaign.universe],
        date,
        campaign.lookback,
        campaign.policy,
    )


def _date_result(date: dt.date, scenario: Scenario, outcome: Outcome) -> DateResult:
    return DateResult(
        date=date.isoformat(),
        fault=scenario.name,
        fired=outcome.fired,
        fired_ok=outcome.fired_ok,
        first_run=outcome.first_run,
        tasks_retried=outcome.tasks_retried,
        bars_lost_at_run_end=outcome.bars_lost,
        silent=outcome.silent,
        needless_requests=outcome.needless_requests,
        fake_revisions=outcome.fake_revisions,
        unfinished=outcome.unfinished,
        ib_rules_broken=outcome.ib_rules_broken,
        seconds_to_recover=outcome.seconds_to_recover,
    )


def _heal(
    campaign: Campaign,
    report: SoakReport,
    open_losses: list[_OpenLoss],
    index: int,
    keys: set[invariants.Key],
    outcome: Outcome,
    triggered_at: float,
) -> list[_OpenLoss]:
    """Record which earlier losses this date's run mended, and open this date's own, if any."""
    if outcome.bars_lost:
        open_losses.append(_OpenLoss(index, keys, triggered_at))
        report.dates[index].healed_by = "not yet"
        return open_losses
    still_open = []
    for loss in open_losses:
        with psycopg.connect(campaign.market_db) as conn:
            served = observe.served_bars(campaign.simulator.served, loss.keys, campaign.now())
            snapshot = observe.db_snapshot(conn, campaign.simulator.model, loss.keys)
        if invariants.lost(served.expected, snapshot):
            still_open.append(loss)
            continue
        healed = report.dates[loss.index]
        healed.healed_by = f"the run of {report.dates[index].date}"
        healed.seconds_to_recover = round(max(snapshot.stored_at.values()) - loss.triggered_at, 1)
    report.dates[index].healed_by = report.dates[index].healed_by or "its own run"
    return still_open


# -- report -------------------------------------------------------------------------------------


def markdown(report: SoakReport) -> str:
    """Render the soak's report as Markdown."""
    by_kind: dict[str, list[DateResult]] = {}
    for result in report.dates:
        by_kind.setdefault(result.fault, []).append(result)
    lines = [
        "# Soak results",
        "",
        "Written by `make soak` (`campaign/soak.py`); raw figures in `campaign/soak.json`. The method: "
        "[docs/fault-campaign.md](../docs/fault-campaign.md#the-soak).",
        "",
        f"Measured {report.measured_at} on {report.code}: seed **{report.seed}**, {len(report.dates)} of "
        f"{report.days} trading dates from {report.dates[0].date if report.dates else '-'}, "
        f"{len(report.symbols)} symbols ({', '.join(report.symbols)}; {report.workload}), every simulator "
        f"answer delayed {SOAK_LATENCY_MS} ms, real scheduler, "
        f"{'CeleryExecutor' if report.executor == 'celery' else 'LocalExecutor'}; {report.minutes} minutes.",
        "",
        f"Reproduce: `make soak DAYS={report.days} SEED={report.seed}`"
        + (f" {'EXECUTOR=celery' if report.executor == 'celery' else ''}".rstrip()),
        "",
        "## The end state against what IB serves",
        "",
        f"- bars compared, every timeframe: {report.bars_compared}",
        f"- differences (bars missing, different, not served, no-data where IB has bars): "
        f"**{len(report.differences)}**",
        f"- revisions that are not real revisions: **{report.fake_revisions}**",
    ]
    if report.stopped_early:
        lines.append(f"- **{report.stopped_early}**")
    lines += [f"  - {difference}" for difference in report.differences[:20]]
    lines += [
        "",
        "## Faults by kind",
        "",
        "| fault | dates | fired | retries | bars lost at its run's end | silent | healed by a later run |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, results in by_kind.items():
        lines.append(
            f"| {kind} | {len(results)} | {sum(r.fired_ok for r in results)} of {len(results)} | "
            f"{sum(r.tasks_retried for r in results)} | {sum(r.bars_lost_at_run_end for r in results)} | "
            f"{sum(r.silent for r in results)} | "
            f"{sum(1 for r in results if r.healed_by.startswith('the run of'))} |"
        )
    lines += [
        "",
        "## Date by date",
        "",
        "| date | fault | fired: the evidence | first run | retries | lost at run end | silent | needless "
        "requests | unfinished | IB rules broken | healed by | s to recover |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.dates:
        fired = ("" if r.fired_ok else "**NOT FIRED** ") + r.fired
        lines.append(
            f"| {r.date} | {r.fault} | {fired.replace('|', '/')} | {r.first_run} | {r.tasks_retried} | "
            f"{r.bars_lost_at_run_end} | {r.silent} | {r.needless_requests} | {r.unfinished} | "
            f"{r.ib_rules_broken} | {r.healed_by} | "
            f"{'-' if r.seconds_to_recover is None else r.seconds_to_recover} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the soak; return 1 when the end state differs from IB's or a drawn fault did not fire."""
    parser = argparse.ArgumentParser(prog="make soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="default: a new one, printed")
    parser.add_argument("--symbols", type=int, default=8, help="the campaign's first N symbols")
    parser.add_argument("--executor", choices=("local", "celery"), default="local")
    parser.add_argument("--max-minutes", type=float, default=180, help="stop drawing dates after this long")
    options = parser.parse_args(argv)
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1, 10**6)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"make soak DAYS={options.days} SEED={seed}", flush=True)
    report = soak(options.days, seed, options.symbols, options.executor, options.max_minutes)
    (CAMPAIGN_DIR / "soak.json").write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    (CAMPAIGN_DIR / "soak.md").write_text(markdown(report))
    print(markdown(report))
    unfired = [r for r in report.dates if not r.fired_ok]
    return 1 if report.differences or report.fake_revisions or unfired or report.stopped_early else 0


if __name__ == "__main__":
    sys.exit(main())
