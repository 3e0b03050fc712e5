"""The daily DAG's task bodies: resolve the date, plan, collect one symbol, summarise.

The DAG file only wires these together; each takes plain values (params, run identity) so it can
be tested without a DAG run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ibkr_market_data import repository, run_metrics
from ibkr_market_data.pacing import minimum_duration
from ibkr_market_data.planning import DAILY_TIMEFRAME, CollectionTarget, plan_daily, session_timestamp
from ibkr_market_data.repository import RunContext
from ibkr_market_data.run_dates import InvalidRunParamError, check_trading_date, resolve_trading_date
from ibkr_market_data.settings import DAILY_EXCHANGES
from ibkr_market_data.tasks.common import as_name_list, fail_on_problems, ib_session, market_db

log = logging.getLogger(__name__)

#: What a dry run assumes per request when it estimates the run's length.
DRY_RUN_LATENCY_SECONDS = 0.2


def selected_exchanges(params: Mapping[str, Any]) -> list[str]:
    exchanges = as_name_list(params.get("exchanges")) or list(DAILY_EXCHANGES)
    unknown = sorted(set(exchanges) - set(DAILY_EXCHANGES))
    if unknown:
        raise InvalidRunParamError(
            f"Param 'exchanges' has unknown exchanges {unknown}; choose from {list(DAILY_EXCHANGES)}"
        )
    return exchanges


def resolve_date(
    params: Mapping[str, Any],
    run_type: object,
    logical_date: dt.datetime | None,
    run_after: dt.datetime | None,
    now: dt.datetime | None = None,
) -> str:
    """The run's trading date as ISO text, checked; InvalidRunParamError on a bad one."""
    exchanges = selected_exchanges(params)
    run_type = str(getattr(run_type, "value", run_type))  # DagRunType is an enum whose str() is its name
    trading_date = resolve_trading_date(
        date_param=params.get("date"),
        run_type=run_type,
        logical_date=logical_date,
        run_after=run_after,
        exchanges=exchanges,
    )
    check_trading_date(trading_date, exchanges, now or dt.datetime.now(dt.UTC))
    log.info("Trading date %s (run type %s, exchanges %s)", trading_date, run_type, ", ".join(exchanges))
    return trading_date.isoformat()


def plan(
    trading_date: str,
    params: Mapping[str, Any],
    run: RunContext,
    now: dt.datetime | None = None,
) -> list[dict[str, object]]:
    """Targets for the mapped collect task; logs the skips (not in a dry run)."""
    day = dt.date.fromisoformat(trading_date)
    wanted_symbols = as_name_list(params.get("symbols"))
    priority = str(params.get("priority") or "all")
    dry_run = bool(params.get("dry_run"))
    conn = market_db().get_conn()
    try:
        if wanted_symbols:
            unknown = sorted(set(wanted_symbols) - repository.known_symbol_names(conn))
            if unknown:
                raise InvalidRunParamError(f"Param 'symbols' names unknown symbols: {', '.join(unknown)}")
        symbols = repository.select_symbols(
            conn, symbols=wanted_symbols, exchanges=selected_exchanges(params), priority=priority
        )
        if wanted_symbols:
            inactive = sorted(set(wanted_symbols) - {row.symbol for row in symbols})
            if inactive:
                log.warning("Not collected (inactive or filtered out): %s", ", ".join(inactive))
        collected = repository.symbols_having_bar(
            conn, [row.id for row in symbols], DAILY_TIMEFRAME, session_timestamp(day)
        )
        daily_plan = plan_daily(day, symbols, collected, now or dt.datetime.now(dt.UTC))
        for skip in daily_plan.skips:
            log.info("%s: skipped, %s", skip.symbol, skip.reason)
        if dry_run:
            estimate = minimum_duration(
                len(daily_plan.targets), small_bars=False, in_flight=1, latency=DRY_RUN_LATENCY_SECONDS
            )
            for target in daily_plan.targets:
                log.info(
                    "Dry run: would request %s %s of %s ending %s",
                    target.duration,
                    target.bar_size,
                    target.contract(),
                    target.end_date_time,
                )
            log.info(
                "Dry run: %d requests, %d skipped. IB's rules set no hard limit on daily bars; at %.1f s "
                "a request and one at a time that is %.0f s, divided by the ibkr pool's slots. Nothing sent or written.",
                len(daily_plan.targets),
                len(daily_plan.skips),
                DRY_RUN_LATENCY_SECONDS,
                estimate,
            )
            return []
        window = session_timestamp(day)
        repository.log_skipped(
            conn,
            run,
            [(skip.symbol_id, skip.reason) for skip in daily_plan.skips],
            DAILY_TIMEFRAME,
            window,
            window,
        )
        conn.commit()
    finally:
        conn.close()
    log.info(
        "Planned %d symbols to collect for %s, %d skipped",
        len(daily_plan.targets),
        day,
        len(daily_plan.skips),
    )
    return [target.to_dict() for target in daily_plan.targets]


def collect(target_data: Mapping[str, object], run: RunContext) -> dict[str, object]:
    """Collect one target; raises PermanentFailure or CollectionFailed (retryable)."""
    from ibkr_market_data.collect import collect_target

    target = CollectionTarget.from_dict(dict(target_data))
    with ib_session() as (conn, ibkr):
        outcome = collect_target(conn, ibkr, target, run)
    return {"symbol": outcome.symbol, "status": outcome.status, "records": outcome.records_collected}


def summarize(
    trading_date: str, targets: Sequence[Mapping[str, object]], params: Mapping[str, Any], run: RunContext
) -> dict[str, int]:
    """Counts per status for the run.

    Raises PermanentFailure naming the symbols that failed, or that were planned but have no
    outcome (their task never ran to the end: a lost worker, a missing pool).
    """
    if params.get("dry_run"):
        log.info("Dry run for %s: nothing was requested or written", trading_date)
        return {}
    conn = market_db().get_conn()
    try:
        counts = repository.run_summary(conn, run.dag_id, run.run_id)
        failures = repository.run_failures(conn, run.dag_id, run.run_id)
        finished = repository.symbols_with_outcome(conn, run.dag_id, run.run_id)
        run_metrics.record(conn, run.dag_id, run.run_id)
    finally:
        conn.close()
    missing = sorted(str(t["symbol"]) for t in targets if t["symbol_id"] not in finished)
    log.info(
        "Trading date %s: %s",
        trading_date,
        ", ".join(f"{status} {count}" for status, count in sorted(counts.items())) or "nothing to do",
    )
    fail_on_problems(f"Trading date {trading_date}", failures, missing, "planned symbols")
    return counts
