"""Every SQL statement of the collector, by table family, with values always bound as parameters.

Functions take an open psycopg connection (``PostgresHook.get_conn()``) and leave transaction
control to the caller, so a symbol's bars and its log row commit together. Callers use the
package, not its modules: ``from ibkr_market_data import repository; repository.upsert_bars(...)``.

* ``symbols``: the universe and what IB said about each contract
* ``bars``: ``market_data`` and ``bar_revisions``
* ``partitions``: ``market_data``'s monthly partitions, created before a write needs one
* ``collection_logs``: one row per attempt, the statuses, what a run did
* ``backfill``: ``no_data_sessions``, first available dates, a backfill run's totals
* ``pacing``: the shared ``ib_pacing_ledger``
* ``leases``: client ids as advisory locks
* ``quality``: ``data_quality_issues`` and what the quality checks read
* ``plans``: ``planned_groups``, each run's plan (what its mapped tasks read)
* ``operations``: run metrics, freshness alerts, and what the dashboard, alerts and report read
* ``reads``: what the read API and the exports read (listings by name, bars, per-session outcomes)
"""

from ibkr_market_data.repository.backfill import (
    first_available_dates,
    no_data_session_dates,
    record_no_data_sessions,
    run_backfill_totals,
    set_first_available_date,
)
from ibkr_market_data.repository.bars import (
    ARRAY_UPSERT_MAX_BARS,
    UpsertResult,
    existing_bar_dates,
    session_bar_counts,
    store_backfilled_bars,
    symbols_having_bar,
    upsert_bars,
)
from ibkr_market_data.repository.collection_logs import (
    COLLECTION_TYPE,
    AttemptStatus,
    RunContext,
    finish_attempt,
    log_skipped,
    run_failures,
    run_records_collected,
    run_single_sessions,
    run_summary,
    run_summary_by_timeframe,
    start_attempt,
    symbols_failed,
    symbols_with_outcome,
)
from ibkr_market_data.repository.leases import release_client_ids, try_lease_client_id
from ibkr_market_data.repository.operations import (
    ALL_EXCHANGES,
    RECENT_RUN_DAYS,
    AlertedGap,
    active_symbol_counts,
    coverage_counts,
    failures,
    latest_runs,
    mark_gap_recovered,
    open_freshness_alerts,
    record_freshness_alert,
    record_request_seconds,
    record_run_metrics,
    run_failure_details,
    run_metrics,
    symbol_attempts,
    symbol_bars,
    symbol_row,
)
from ibkr_market_data.repository.pacing import (
    SentRequest,
    lock_pacing_ledger,
    recent_requests,
    record_request,
)
from ibkr_market_data.repository.partitions import (
    MONTHLY_TIMEFRAMES,
    ensure_partitions,
    forget_known_partitions,
)
from ibkr_market_data.repository.plans import (
    PLAN_RETENTION,
    PlannedGroup,
    PlanNotFoundError,
    planned_group,
    planned_items,
    save_plan,
)
from ibkr_market_data.repository.quality import (
    RecordedFindings,
    bars_for_checks,
    intraday_sessions,
    record_quality_findings,
    revision_ratios,
    run_quality_findings,
)
from ibkr_market_data.repository.reads import (
    BAR_COLUMNS,
    Listing,
    PeriodFingerprint,
    bar_batches,
    listings,
    period_fingerprints,
    session_outcomes,
)
from ibkr_market_data.repository.symbols import (
    SymbolRow,
    delete_unresolved_symbol,
    has_active_symbols,
    known_symbol_names,
    mark_resolved,
    mark_unresolved,
    select_symbols,
    symbol_id_by_con_id,
    unresolved_symbols,
    upsert_universe,
)

__all__ = [
    "PLAN_RETENTION",
    "PlanNotFoundError",
    "PlannedGroup",
    "planned_group",
    "planned_items",
    "save_plan",
    "ALL_EXCHANGES",
    "RecordedFindings",
    "bars_for_checks",
    "intraday_sessions",
    "record_quality_findings",
    "revision_ratios",
    "run_quality_findings",
    "AlertedGap",
    "RECENT_RUN_DAYS",
    "active_symbol_counts",
    "coverage_counts",
    "failures",
    "latest_runs",
    "mark_gap_recovered",
    "open_freshness_alerts",
    "record_freshness_alert",
    "record_request_seconds",
    "record_run_metrics",
    "run_failure_details",
    "run_metrics",
    "symbol_attempts",
    "symbol_bars",
    "symbol_row",
    "ARRAY_UPSERT_MAX_BARS",
    "COLLECTION_TYPE",
    "AttemptStatus",
    "RunContext",
    "SentRequest",
    "SymbolRow",
    "UpsertResult",
    "existing_bar_dates",
    "session_bar_counts",
    "finish_attempt",
    "first_available_dates",
    "has_active_symbols",
    "known_symbol_names",
    "lock_pacing_ledger",
    "log_skipped",
    "mark_resolved",
    "delete_unresolved_symbol",
    "symbol_id_by_con_id",
    "mark_unresolved",
    "no_data_session_dates",
    "recent_requests",
    "record_no_data_sessions",
    "record_request",
    "release_client_ids",
    "run_backfill_totals",
    "run_failures",
    "run_summary_by_timeframe",
    "run_records_collected",
    "run_single_sessions",
    "run_summary",
    "select_symbols",
    "set_first_available_date",
    "start_attempt",
    "store_backfilled_bars",
    "symbols_having_bar",
    "symbols_failed",
    "symbols_with_outcome",
    "try_lease_client_id",
    "unresolved_symbols",
    "upsert_bars",
    "upsert_universe",
    "MONTHLY_TIMEFRAMES",
    "ensure_partitions",
    "forget_known_partitions",
    "BAR_COLUMNS",
    "Listing",
    "PeriodFingerprint",
    "bar_batches",
    "listings",
    "period_fingerprints",
    "session_outcomes",
]
