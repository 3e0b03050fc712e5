"""The daily DAG's task bodies: resolve the date, plan, collect one symbol or group, summarise.

Each takes plain values (params, run identity), so it is tested without a DAG run. See docs/daily-dag.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from ibkr_market_data import repository
from ibkr_market_data.bars import DAILY_BAR_SIZE
from ibkr_market_data.daily_plan import (
    CollectionTarget,
    DailyPlan,
    StoredState,
    lookback_start,
    plan_daily,
    session_timestamp,
)
from ibkr_market_data.errors import InvalidRunParamError, PermanentError
from ibkr_market_data.grouping import (
    group_count,
    group_items,
    in_flight_per_connection,
    max_mapped_tasks,
    request_seconds,
)
from ibkr_market_data.payloads import GroupOutcomePayload, PlannedGroupPayload, TargetPayload
from ibkr_market_data.repository import AttemptStatus, RunContext
from ibkr_market_data.run_dates import check_trading_date, resolve_trading_date
from ibkr_market_data.settings import (
    CLOSE_DELAY_MINUTES,
    DAILY_LOOKBACK_SESSIONS,
    IBKR_POOL_SLOTS,
    MAX_LOOKBACK_SESSIONS,
)
from ibkr_market_data.tasks import derivation
from ibkr_market_data.tasks.database import market_connection, stored_sessions
from ibkr_market_data.tasks.ib_session import ib_session
from ibkr_market_data.tasks.params import (
    as_name_list,
    check_quality_settings,
    select_wanted_symbols,
    selected_exchanges,
    selected_timeframe,
    timeframes_of,
)
from ibkr_market_data.tasks.summaries import MinuteSessions, log_dry_run, summarize_run, upstream_failed
from ibkr_market_data.timeframes import ONE_MINUTE

if TYPE_CHECKING:
    import psycopg

    from ibkr_market_data.derived import DeriveSettings
    from ibkr_market_data.repository import SymbolRow
    from ibkr_market_data.timeframes import Timeframe

log = logging.getLogger(__name__)


def resolve_date(
    params: Mapping[str, Any],
    run_type: object,
    logical_date: dt.datetime | None,
    run_after: dt.datetime | None,
    now: dt.datetime | None = None,
) -> str:
    """Return the run's trading date as ISO text, checked with every other param.

    :param params: the run's params.
    :param run_type: the DagRun's run type (scheduled, manual, backfill).
    :param logical_date: the run's logical date, if any.
    :param run_after: when the run was due.
    :param now: the current time; default the clock.
    :raises InvalidRunParamError: a param, or the date it gives, is bad.
    """
    exchanges = selected_exchanges(params)
    run_type = str(getattr(run_type, "value", run_type))  # DagRunType is an enum whose str() is its name
    trading_date = resolve_trading_date(
        date_param=params.get("date"),
        run_type=run_type,
        logical_date=logical_date,
        run_after=run_after,
        exchanges=exchanges,
        delay=dt.timedelta(minutes=CLOSE_DELAY_MINUTES),
    )
    lookback_param(params)
    selected_timeframe(params)
    check_quality_settings()
    check_trading_date(trading_date, exchanges, now or dt.datetime.now(dt.UTC))
    log.info("Trading date %s (run type %s, exchanges %s)", trading_date, run_type, ", ".join(exchanges))
    return trading_date.isoformat()


def lookback_param(params: Mapping[str, Any], run_type: object = None) -> int:
    """Return the ``lookback_sessions`` param: the sessions each symbol's request looks back over.

    A run of ``airflow backfill create`` covers its own date alone: the backfill's range is its
    lookback, and its runs would otherwise fetch each other's sessions again.

    :raises InvalidRunParamError: not a whole number of sessions in range.
    """
    value = params.get("lookback_sessions")
    if str(getattr(run_type, "value", run_type)) == "backfill":
        value = 1
    if value is None or value == "":
        return DAILY_LOOKBACK_SESSIONS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LOOKBACK_SESSIONS:
        raise InvalidRunParamError(
            f"Param 'lookback_sessions' must be a whole number of sessions from 1 to "
            f"{MAX_LOOKBACK_SESSIONS}, got {value!r}"
        )
    return value


def plan(
    trading_date: str,
    params: Mapping[str, Any],
    run: RunContext,
    now: dt.datetime | None = None,
    run_type: object = None,
) -> list[PlannedGroupPayload]:
    """Plan the run: store its groups of targets in ``planned_groups`` and log the skips.

    :param trading_date: the run's trading date, ISO text.
    :param params: the run's params.
    :param run: the run's identity.
    :param now: the current time; default the clock.
    :param run_type: the DagRun's run type.
    :return: the mapped collect task's references to the groups; none in a dry run, which writes nothing.
    :raises InvalidRunParamError: ``symbols`` names one never loaded.
    """
    day = dt.date.fromisoformat(trading_date)
    lookback = lookback_param(params, run_type)
    load_universe_once(dry_run=bool(params.get("dry_run")))
    with market_connection() as conn:
        symbols = select_wanted_symbols(
            conn,
            as_name_list(params.get("symbols")),
            selected_exchanges(params),
            priority=str(params.get("priority") or "all"),
        )
        first_available = repository.first_available_dates(conn, [row.id for row in symbols])
        selected = selected_timeframe(params)
        by_timeframe = timeframes_of(symbols, selected)
        derive = derivation.derive_settings(selected)
        derived_ids = derivation.derived_symbols(by_timeframe, derive)
        since = lookback_start(day, lookback)
        plans: dict[Timeframe, DailyPlan] = {}
        derivations: dict[Timeframe, derivation.Derivation] = {}
        minute_complete: Mapping[int, Collection[dt.date]] = {}
        for tf, rows in by_timeframe.items():
            state = stored_state(conn, tf, rows, since, day, first_available)
            if tf == ONE_MINUTE:
                minute_complete = state.bars
            if tf in derived_ids:
                complete = {symbol_id: set(days) for symbol_id, days in state.bars.items()}
                derivations[tf] = derivation.Derivation(derived_ids[tf], complete)
                settled = derivation.ib_settled(rows, derivations[tf], derive, since, day)
                state = replace(state, bars=settled)
            plans[tf] = plan_daily(day, rows, state, now or dt.datetime.now(dt.UTC), lookback, tf)
            if tf in derived_ids:
                plans[tf] = derivation.one_session_per_target(plans[tf], rows, state, tf)
        if derivations:
            plans[ONE_MINUTE] = derivation.with_derivation(plans[ONE_MINUTE], derivations, derive)
        for tf, timeframe_plan in plans.items():
            for skip in timeframe_plan.skips:
                log.info("%s %s: skipped, %s", skip.symbol, tf.name, skip.reason)
            log.info(
                "Planned %d %s requests for %s (each symbol over its last %d sessions), %d symbols skipped",
                len(timeframe_plan.targets),
                tf.name,
                day,
                lookback,
                len(timeframe_plan.skips),
            )
        targets = [target for timeframe_plan in plans.values() for target in timeframe_plan.targets]
        groups = group_targets(targets)
        if params.get("dry_run"):
            log_dry_run(targets, len(symbols))
            return []
        window = session_timestamp(day)
        for tf, timeframe_plan in plans.items():
            skips = [(skip.symbol_id, skip.reason) for skip in timeframe_plan.skips]
            repository.log_skipped(conn, run, skips, tf.name, window, window)
        if derivations:
            _log_derivation(plans, derivations, derive)
            built = derivation.derive_stored_sessions(
                conn,
                run,
                by_timeframe[ONE_MINUTE],
                {symbol_id: set(days) for symbol_id, days in minute_complete.items()},
                derivations,
                derive,
            )
            log.info("Built %d sessions of 5min/1hour bars from 1-minute bars stored before", built)
        planned = repository.save_plan(conn, run, groups)
        conn.commit()
    return [group.to_dict() for group in planned]


def _log_derivation(
    plans: Mapping[Timeframe, DailyPlan],
    derivations: Mapping[Timeframe, derivation.Derivation],
    settings: DeriveSettings,
) -> None:
    """Log how many sessions the run builds from 1-minute bars, and how many IB answers instead."""
    minute_targets = plans[ONE_MINUTE].targets
    for tf in derivations:
        built = sum(1 for target in minute_targets if tf.name in target.derive)
        asked = len(plans[tf].targets)
        log.info(
            "%s: %d sessions to build from the 1-minute answers, %d asked of IB "
            "(the cross-check, %s%% of symbol-sessions)",
            tf.name,
            built,
            asked,
            settings.cross_check_percent,
        )


def load_universe_once(dry_run: bool = False) -> None:
    """Load the universe files and resolve them through IB, as ``load-symbols`` does, if none ever was.

    A fresh install starts without IB (a gateway may wait for its 2FA): the first run that reaches
    IB loads the symbols. IB is connected to first, so an unreachable gateway writes nothing.

    :param dry_run: a dry run writes nothing: it only logs that no symbol is loaded yet.
    :raises SymbolsNotLoadedError: IB cannot be reached; the task retries.
    """
    with market_connection() as conn:
        if repository.has_resolved_symbols(conn):
            return
    if dry_run:
        log.warning("No symbols loaded yet: the first run that reaches IB loads the universe files")
        return
    from ibkr_market_data.errors import BadInputError, IbkrError, PermanentError, SymbolsNotLoadedError
    from ibkr_market_data.known_actions import read_known_actions
    from ibkr_market_data.symbols import load_symbols
    from ibkr_market_data.universe import load_universe

    try:  # bad files fail before IB is asked
        universe, known = load_universe(), read_known_actions()
    except BadInputError as exc:
        raise PermanentError(str(exc)) from None
    log.info("No symbols loaded yet: loading the universe files and resolving them through IB")
    try:
        with ib_session() as (conn, ibkr):
            ibkr.get_conn()
            report = load_symbols(conn, ibkr, universe, known)
    except IbkrError as exc:
        raise SymbolsNotLoadedError(
            f"IB not reachable: symbols not loaded yet ({exc}). The first run that reaches TWS / IB "
            "Gateway loads them (is the gateway logged in?); this task retries."
        ) from exc
    log.info(
        "Universe loaded: %d symbols, %d resolved, %d unresolved, %d not asked",
        report.loaded,
        len(report.resolved),
        len(report.unresolved),
        len(report.pending),
    )


def stored_state(
    conn: psycopg.Connection,
    tf: Timeframe,
    rows: Sequence[SymbolRow],
    since: dt.date,
    day: dt.date,
    first_available: Mapping[int, dt.date],
) -> StoredState:
    """Return what the database holds of ``tf`` for ``rows`` from ``since`` to ``day``.

    That is the sessions stored whole, and those recorded without data.
    """
    ids = [row.id for row in rows]
    bars = stored_sessions(conn, tf, rows, since, day)
    return StoredState(
        bars=bars,
        no_data=repository.no_data_session_dates(conn, ids, tf.name, since, day),
        first_available=first_available,
        memberships=repository.membership_periods(conn, ids),
    )


def target_seconds(target: CollectionTarget) -> float:
    """Return the expected seconds of ``target``'s request: its latency and its bars' writes."""
    return request_seconds(target.planned_bars)


def group_targets(targets: Sequence[CollectionTarget]) -> list[tuple[str, list[TargetPayload]]]:
    """Return the targets in as many groups as their expected work pays for, logging how."""
    in_flight = in_flight_per_connection(IBKR_POOL_SLOTS)
    work = sum(target_seconds(target) for target in targets)
    count = group_count(len(targets), work, IBKR_POOL_SLOTS, in_flight)
    groups = group_items(targets, count, lambda target: target.label, target_seconds)
    if len(groups) < len(targets):
        log.info(
            "Grouped %d targets (%.0f s of expected IB work) into %d task instances of %d-%d targets "
            "(%s), each with up to %d requests in flight on its connection",
            len(targets),
            work,
            len(groups),
            min(len(chunk) for _, chunk in groups),
            max(len(chunk) for _, chunk in groups),
            "IBKR_MAX_MAPPED_TASKS" if max_mapped_tasks() is not None else "sized by the work",
            in_flight,
        )
    return [(label, [target.to_dict() for target in chunk]) for label, chunk in groups]


def collect(group: PlannedGroupPayload, run: RunContext) -> GroupOutcomePayload:
    """Collect one planned group's targets: one alone, or several concurrently over one connection.

    :param group: the mapped item: where the group's targets are in ``planned_groups``.
    :param run: the run's identity and try.
    :return: the group's counts per status.
    :raises CollectionError: once every symbol had its try; retryable when a retry may help.
    :raises PermanentError: a failure no retry can mend.
    """
    from ibkr_market_data.attempt import collect_group, collect_target

    with ib_session() as (conn, ibkr):
        items = cast(list[TargetPayload], repository.planned_group(conn, run, group["index"]))
        conn.commit()
        targets = [CollectionTarget.from_dict(item) for item in items]
        if len(targets) == 1:
            outcomes = [collect_target(conn, ibkr, targets[0], run, record_absent=True)]
        else:
            in_flight = in_flight_per_connection(IBKR_POOL_SLOTS)
            outcomes = collect_group(conn, ibkr, targets, run, in_flight, group["label"])
    statuses = [outcome.status for outcome in outcomes]
    return {
        "label": group["label"],
        "symbols": len(targets),
        "completed": statuses.count(AttemptStatus.COMPLETED),
        "no_data": statuses.count(AttemptStatus.NO_DATA),
        "skipped": statuses.count(AttemptStatus.SKIPPED),
        "records": sum(outcome.records_collected for outcome in outcomes),
    }


def summarize(
    trading_date: str | None,
    groups: Sequence[PlannedGroupPayload] | None,
    params: Mapping[str, Any],
    run: RunContext,
) -> dict[str, int]:
    """Return the run's counts per status, after the data-quality checks over the sessions asked for.

    :param trading_date: the run's trading date; None when its task failed.
    :param groups: the plan's groups; None when planning failed.
    :param params: the run's params.
    :param run: the run's identity.
    :raises PermanentError: naming the symbols that failed, the data-quality errors first found, the
        symbols planned but without an outcome (a lost worker, a missing pool), or the upstream task
        that left no date or plan.
    """
    if trading_date is None:
        raise upstream_failed("No trading date", "resolve_date")
    if groups is None:
        try:
            with market_connection() as conn:
                loaded = repository.has_resolved_symbols(conn)
        except Exception:  # the database's own failure is in the plan's log: name the task, at once
            loaded = True
        what = f"Trading date {trading_date}" + ("" if loaded else ": no symbols loaded yet")
        raise upstream_failed(what, "plan")
    if params.get("dry_run"):
        log.info("Dry run for %s: nothing was requested or written", trading_date)
        return {}
    with market_connection() as conn:
        targets = repository.planned_items(conn, run)
    planned = {target["symbol_id"]: target["symbol"] for target in targets}
    expected = {
        target["symbol_id"]: [
            dt.date.fromisoformat(day) for day in target.get("sessions") or (target["session"],)
        ]
        for target in targets
        if target["bar_size"] == DAILY_BAR_SIZE
    }
    planned_targets = [CollectionTarget.from_dict(cast(TargetPayload, target)) for target in targets]
    derivation.log_built_and_asked(planned_targets)
    with market_connection() as conn:
        cross_check_problems = derivation.cross_check(conn, run, planned_targets)
    report = summarize_run(
        f"Trading date {trading_date}",
        run,
        planned,
        "planned symbols",
        expected_sessions=expected,
        minute_sessions=MinuteSessions.of_targets(cast(list[TargetPayload], targets)),
        alert_unusual_no_data=True,
    )
    if cross_check_problems:
        raise PermanentError(
            f"Trading date {trading_date}: {len(cross_check_problems)} data-quality errors found: "
            + ", ".join(cross_check_problems)
        )
    return report.counts
