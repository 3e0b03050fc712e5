"""What the daily and backfill task bodies share: the database, param checks, dry runs, summaries, the IB session."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ibkr_market_data import repository
from ibkr_market_data.pacing import minimum_duration
from ibkr_market_data.run_dates import InvalidRunParamError
from ibkr_market_data.settings import DAILY_EXCHANGES, IBKR_CONN_ID, MARKET_DATA_CONN_ID
from ibkr_market_data.timeframes import ONE_MINUTE

if TYPE_CHECKING:
    import psycopg
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.payloads import TargetPayload
    from ibkr_market_data.planning import CollectionTarget
    from ibkr_market_data.quality import QualityRules
    from ibkr_market_data.repository import RunContext, SymbolRow
    from ibkr_market_data.run_report import RunReport
    from ibkr_market_data.timeframes import Timeframe

log = logging.getLogger(__name__)

#: What a dry run assumes per request when it estimates the run's length.
DRY_RUN_LATENCY_SECONDS = 0.2


class PermanentFailure(Exception):
    """A failure that a retry cannot mend; the DAGs' retry policy fails the task at once."""


def market_db() -> PostgresHook:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=MARKET_DATA_CONN_ID)


def open_market_connection() -> psycopg.Connection:
    """A new connection to the market-data database; the caller closes it."""
    # The provider types get_conn() as a psycopg2 / psycopg 3 union; this deployment runs psycopg 3.
    return cast("psycopg.Connection", market_db().get_conn())


@contextmanager
def market_connection() -> Iterator[psycopg.Connection]:
    """A connection to the market-data database (psycopg 3), closed on exit; the caller commits."""
    conn = open_market_connection()
    try:
        yield conn
    finally:
        conn.close()


def as_name_list(value: object) -> list[str]:
    """A param given as a list, or as one comma-separated string, as clean upper-case names."""
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    return [str(item).strip().upper() for item in items if str(item).strip()]


def selected_exchanges(params: Mapping[str, Any]) -> list[str]:
    """The ``exchanges`` param, all of ``DAILY_EXCHANGES`` when empty; InvalidRunParamError on an unknown one."""
    exchanges = as_name_list(params.get("exchanges")) or list(DAILY_EXCHANGES)
    unknown = sorted(set(exchanges) - set(DAILY_EXCHANGES))
    if unknown:
        raise InvalidRunParamError(
            f"Param 'exchanges' has unknown exchanges {unknown}; choose from {list(DAILY_EXCHANGES)}"
        )
    return exchanges


def selected_timeframe(params: Mapping[str, Any]) -> Timeframe | None:
    """The ``timeframe`` param: one timeframe for every symbol, or None for each one's configured timeframes.

    Raises InvalidRunParamError on an unknown timeframe, or on a bad timeframe setting when the
    run collects the configured ones.
    """
    from ibkr_market_data import timeframes

    value = str(params.get("timeframe") or timeframes.CONFIGURED).strip().lower()
    if value == timeframes.CONFIGURED:
        try:
            timeframes.policy_from_env()
        except timeframes.UnknownTimeframeError as exc:
            raise InvalidRunParamError(str(exc)) from None  # it names the variable
        return None
    try:
        return timeframes.timeframe(value)
    except timeframes.UnknownTimeframeError as exc:
        raise InvalidRunParamError(f"Param 'timeframe': {exc}") from None


def timeframes_of(rows: Sequence[SymbolRow], selected: Timeframe | None) -> dict[Timeframe, list[SymbolRow]]:
    """The symbols to collect per timeframe: all of them in ``selected``, or each in its configured ones."""
    from ibkr_market_data import timeframes

    if selected is not None:
        return {selected: list(rows)} if rows else {}
    policy = timeframes.policy_from_env()
    by_timeframe: dict[Timeframe, list[SymbolRow]] = {}
    for row in rows:
        for tf in policy.for_priority(row.priority):
            by_timeframe.setdefault(tf, []).append(row)
    return by_timeframe


def stored_sessions(
    conn: psycopg.Connection, tf: Timeframe, rows: Sequence[SymbolRow], start: dt.date, end: dt.date
) -> dict[int, set[dt.date]]:
    """Per symbol, the sessions from ``start`` to ``end`` whose ``tf`` bars are stored whole.

    Daily: the session's bar. Intraday: as many bars as the exchange's schedule holds that day,
    early closes included; a symbol whose exchange has no calendar has none.
    """
    from ibkr_market_data import calendars
    from ibkr_market_data.planning import complete_sessions

    ids = [row.id for row in rows]
    if not tf.intraday:
        return repository.existing_bar_dates(conn, ids, tf.name, start, end)
    zones = {
        row.id: calendars.time_zone(row.primary_exchange)
        for row in rows
        if row.primary_exchange.upper() in calendars.CALENDAR_CODES
    }
    counts = repository.session_bar_counts(conn, zones, tf.name, start, end)
    return complete_sessions(rows, tf, counts)


def select_wanted_symbols(
    conn: psycopg.Connection, symbols: Sequence[str], exchanges: Sequence[str], priority: str = "all"
) -> list[SymbolRow]:
    """The active symbols the params select; InvalidRunParamError if ``symbols`` names one never loaded.

    A named symbol that is inactive or filtered out by ``exchanges`` / ``priority`` is logged, not refused.
    """
    if symbols:
        unknown = sorted(set(symbols) - repository.known_symbol_names(conn))
        if unknown:
            raise InvalidRunParamError(
                f"Param 'symbols' names unknown symbols: {', '.join(unknown)}; "
                "add them to the universe and run load-symbols first"
            )
    rows = repository.select_symbols(conn, symbols=symbols, exchanges=exchanges, priority=priority)
    left_out = sorted(set(symbols) - {row.symbol for row in rows})
    if left_out:
        log.warning("Left out (inactive, or not on %s): %s", ", ".join(exchanges), ", ".join(left_out))
    return rows


def log_dry_run(targets: Sequence[CollectionTarget], symbols: int) -> None:
    """Log each request a dry run would send, and how long sending them would take."""
    for target in targets:
        log.info(
            "Dry run: would request %s %s of %s ending %s",
            target.duration,
            target.bar_size,
            target.contract(),
            target.end_date_time,
        )
    estimate = minimum_duration(len(targets), small_bars=False, in_flight=1, latency=DRY_RUN_LATENCY_SECONDS)
    log.info(
        "Dry run: %d requests for %d symbols. IB's rules set no hard limit on daily bars; at %.1f s a "
        "request and one at a time that is %.0f s, divided by the ibkr pool's slots. Nothing sent or written.",
        len(targets),
        symbols,
        DRY_RUN_LATENCY_SECONDS,
        estimate,
    )


def upstream_failed(what: str, task_id: str) -> PermanentFailure:
    """The summary's failure when an upstream task left it nothing to report on."""
    return PermanentFailure(
        f"{what}: nothing was planned or collected because task {task_id!r} failed; see its log"
    )


def summarize_run(
    what: str,
    run: RunContext,
    planned: Mapping[int, str],
    unfinished_label: str,
    still_missing: Collection[int] = (),
    expected_sessions: Mapping[int, Collection[dt.date]] | None = None,
    minute_sessions: MinuteSessions | None = None,
) -> RunReport:
    """Read the run's report, log it; PermanentFailure naming failed and unfinished symbols.

    With ``expected_sessions`` (per planned symbol, the sessions the run set out to have) the
    data-quality checks run over them too, their findings are recorded and logged, and errors first
    found by this run fail it as well. ``minute_sessions``: the 1-minute sessions the run collected,
    held against their daily bars.
    """
    from ibkr_market_data import run_metrics
    from ibkr_market_data.run_report import read_run_report

    with market_connection() as conn:
        report = read_run_report(conn, run.dag_id, run.run_id, planned, still_missing)
        run_metrics.record(conn, run.dag_id, run.run_id)
        quality_problems = (
            check_quality(conn, run, planned, expected_sessions, minute_sessions=minute_sessions)
            if expected_sessions
            else []
        )
    log.info("%s: %s", what, report.status_line())
    for failure in report.failures:
        log.error("%s failed (IB code %s): %s", failure.symbol, failure.ib_code, failure.reason)
    problems = report.problems(unfinished_label) + quality_problems
    if problems:
        raise PermanentFailure(f"{what}: " + "; ".join(problems))
    return report


@dataclass(frozen=True)
class MinuteSessions:
    """The 1-minute sessions a run collected: per symbol id the bars each holds by its schedule, and the symbol's zone."""

    scheduled: Mapping[int, Mapping[dt.date, int]]
    zones: Mapping[int, str]

    def __bool__(self) -> bool:
        return bool(self.scheduled)

    @classmethod
    def of_targets(cls, targets: Sequence[TargetPayload]) -> MinuteSessions:
        """From a run's planned targets: those of 1-minute bars."""
        scheduled: dict[int, dict[dt.date, int]] = {}
        zones: dict[int, str] = {}
        for target in targets:
            if target["bar_size"] != ONE_MINUTE.bar_size or not target.get("time_zone"):
                continue
            sessions = zip(target.get("sessions") or (), target.get("expected_bars") or (), strict=False)
            scheduled.setdefault(target["symbol_id"], {}).update(
                (dt.date.fromisoformat(day), count) for day, count in sessions
            )
            zones[target["symbol_id"]] = target["time_zone"]
        return cls(scheduled, zones)


def check_quality_settings() -> None:
    """Refuse a bad ``IBKR_QUALITY_SEVERITIES`` before any request (InvalidRunParamError naming the entry)."""
    from ibkr_market_data import quality

    try:
        quality.rules_from_env()
    except quality.InvalidQualitySetting as exc:
        raise InvalidRunParamError(str(exc)) from None


def check_quality(
    conn: psycopg.Connection,
    run: RunContext,
    planned: Mapping[int, str],
    expected_sessions: Mapping[int, Collection[dt.date]],
    rules: QualityRules | None = None,
    minute_sessions: MinuteSessions | None = None,
) -> list[str]:
    """Check the daily bars of ``expected_sessions``, record and log the findings (``quality``).

    Returns the run's problem, if any: the findings of severity error this run is the first to see.
    A finding already open from an earlier run is logged again, and does not fail this one.
    """
    from ibkr_market_data import quality
    from ibkr_market_data.bars import DAILY_TIMEFRAME
    from ibkr_market_data.planning import lookback_start
    from ibkr_market_data.run_report import names

    try:
        rules = rules or quality.rules_from_env()
    except quality.InvalidQualitySetting as exc:
        raise PermanentFailure(str(exc)) from None
    ids = sorted(expected_sessions)
    all_sessions = [day for days in expected_sessions.values() for day in days]
    if not all_sessions:
        return []
    first, last = min(all_sessions), max(all_sessions)
    since = lookback_start(first, rules.reference_sessions)
    bars = repository.bars_for_checks(conn, ids, DAILY_TIMEFRAME, since, last)
    no_data = repository.no_data_session_dates(conn, ids, DAILY_TIMEFRAME, first, last, settled_only=False)
    revisions = repository.revision_ratios(conn, ids, DAILY_TIMEFRAME, since, last)
    minutes = (
        repository.intraday_sessions(conn, ONE_MINUTE.name, minute_sessions.scheduled, minute_sessions.zones)
        if minute_sessions
        else {}
    )
    findings = quality.check_symbols(
        (
            quality.SymbolData(
                symbol_id=symbol_id,
                symbol=planned.get(symbol_id, str(symbol_id)),
                bars=bars.get(symbol_id, []),
                expected=expected_sessions[symbol_id],
                no_data=no_data.get(symbol_id, ()),
                revision_ratios=revisions.get(symbol_id, {}),
                intraday=minutes.get(symbol_id, {}),
            )
            for symbol_id in ids
        ),
        rules,
    )
    recorded = repository.record_quality_findings(conn, run, findings, expected_sessions, DAILY_TIMEFRAME)
    conn.commit()
    for finding in recorded.new + recorded.known:
        seen = "new" if finding in recorded.new else "still open"
        level = logging.ERROR if finding.severity is quality.Severity.ERROR else logging.WARNING
        log.log(level, "Data quality (%s, %s): %s", finding.severity, seen, finding.describe())
    log.info(
        "Data quality: %d findings (%d new, %d still open), %d resolved, over %d symbols",
        len(findings),
        len(recorded.new),
        len(recorded.known),
        recorded.resolved,
        len(ids),
    )
    errors = [finding for finding in recorded.new if finding.severity is quality.Severity.ERROR]
    if not errors:
        return []
    return [
        f"{len(errors)} data-quality errors found: "
        + names(f"{finding.symbol} {finding.session.isoformat()} {finding.check}" for finding in errors)
    ]


def run_context() -> RunContext:
    """The ``RunContext`` (dag, run, try) of the task instance running now."""
    from airflow.sdk import get_current_context

    from ibkr_market_data.repository import RunContext

    context = get_current_context()
    return RunContext(
        dag_id=context["dag"].dag_id, run_id=context["run_id"], try_number=context["ti"].try_number
    )


@contextmanager
def ib_session(paced: bool = False) -> Iterator[tuple[psycopg.Connection, IbkrHook]]:
    """A market-data connection and an IbkrHook whose client id is leased on that connection.

    The lease is a session-level advisory lock, so it holds across the connection's commits and
    rollbacks and dies with it. ``paced``: small-bar and head-timestamp requests wait their turn
    in the shared pacing ledger. A CollectionFailed that no retry can mend, and a bad extra of the
    ibkr connection, become PermanentFailure.
    """
    import functools

    from ibkr_market_data.client_ids import PostgresClientIdLease
    from ibkr_market_data.collect import CollectionFailed
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.hooks.ibkr_config import IbkrConfigError
    from ibkr_market_data.pacing import PostgresPacer

    conn = open_market_connection()
    try:
        hook = IbkrHook(
            IBKR_CONN_ID,
            client_id_lease=functools.partial(PostgresClientIdLease, conn),
            pacer=PostgresPacer(open_market_connection) if paced else None,
        )
        with hook:
            yield conn, hook
    except CollectionFailed as exc:
        if not exc.retryable:
            raise PermanentFailure(str(exc)) from exc
        raise
    except IbkrConfigError as exc:
        raise PermanentFailure(str(exc)) from exc
    finally:
        conn.close()
