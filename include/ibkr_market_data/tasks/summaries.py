"""Summarise a run: the dry-run log, the run summary with its data-quality checks, and their failures.

See docs/operations.md and docs/data-quality.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ibkr_market_data import repository
from ibkr_market_data.errors import (
    InvalidQualitySettingError,
    PermanentError,
)
from ibkr_market_data.pacing import minimum_duration
from ibkr_market_data.tasks.database import market_connection
from ibkr_market_data.timeframes import ONE_MINUTE

if TYPE_CHECKING:
    import psycopg

    from ibkr_market_data.daily_plan import CollectionTarget
    from ibkr_market_data.payloads import TargetPayload
    from ibkr_market_data.quality import QualityRules
    from ibkr_market_data.repository import RunContext
    from ibkr_market_data.run_summary import RunSummary

log = logging.getLogger(__name__)


#: What a dry run assumes per request when it estimates the run's length.
DRY_RUN_LATENCY_SECONDS = 0.2


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
        "request and one at a time that is %.0f s, divided by the ibkr pool's slots. "
        "Nothing sent or written.",
        len(targets),
        symbols,
        DRY_RUN_LATENCY_SECONDS,
        estimate,
    )


def upstream_failed(what: str, task_id: str) -> PermanentError:
    """Return the summary's failure when an upstream task left it nothing to report on."""
    return PermanentError(
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
    alert_unusual_no_data: bool = False,
) -> RunSummary:
    """Read the run's summary, record its metrics and log it; return it.

    :param what: names the run in the log and errors.
    :param run: the run's identity.
    :param planned: the planned symbols by id.
    :param unfinished_label: what the summary calls planned symbols without an outcome.
    :param still_missing: planned symbol ids that still lack sessions the run set out to fill.
    :param expected_sessions: per planned symbol, the sessions the run set out to have: the
        data-quality checks run over them, and errors this run is first to find fail it too.
    :param minute_sessions: the 1-minute sessions the run collected, held against their daily bars.
    :param alert_unusual_no_data: alert when the run's share of no-data answers is unusual
        (``no_data_alerts``); the alert does not fail the run.
    :raises PermanentError: naming the failed and unfinished symbols and the new data-quality errors.
    """
    from ibkr_market_data import no_data_alerts, run_metrics
    from ibkr_market_data.run_summary import read_run_summary

    with market_connection() as conn:
        report = read_run_summary(conn, run.dag_id, run.run_id, planned, still_missing)
        run_metrics.record(conn, run.dag_id, run.run_id)
        if alert_unusual_no_data:
            try:
                no_data_alerts.check_run(conn, run.dag_id, run.run_id)
            except InvalidQualitySettingError as exc:
                raise PermanentError(str(exc)) from None
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
        raise PermanentError(f"{what}: " + "; ".join(problems))
    return report


@dataclass(frozen=True)
class MinuteSessions:
    """The 1-minute sessions a run collected: per symbol id, the bars each one's schedule holds; its zone."""

    scheduled: Mapping[int, Mapping[dt.date, int]]
    zones: Mapping[int, str]

    def __bool__(self) -> bool:
        return bool(self.scheduled)

    @classmethod
    def of_targets(cls, targets: Sequence[TargetPayload]) -> MinuteSessions:
        """Return the 1-minute sessions of a run's planned targets, and those of its daily sessions.

        A daily session's stored minutes are held against its bar too: an earlier run may have
        collected them (a halted session it settled short is not asked for again).
        """
        from ibkr_market_data import calendars
        from ibkr_market_data.bars import DAILY_BAR_SIZE
        from ibkr_market_data.daily_plan import scheduled_bars

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
        for target in targets:
            exchange = target["primary_exchange"]
            if target["bar_size"] != DAILY_BAR_SIZE or exchange.upper() not in calendars.CALENDAR_CODES:
                continue
            symbol_sessions = scheduled.setdefault(target["symbol_id"], {})
            for day in target.get("sessions") or (target["session"],):
                session = dt.date.fromisoformat(day)
                symbol_sessions.setdefault(session, scheduled_bars(exchange, session, ONE_MINUTE))
            zones.setdefault(target["symbol_id"], calendars.time_zone(exchange))
        return cls(scheduled, zones)


def check_quality(
    conn: psycopg.Connection,
    run: RunContext,
    planned: Mapping[int, str],
    expected_sessions: Mapping[int, Collection[dt.date]],
    rules: QualityRules | None = None,
    minute_sessions: MinuteSessions | None = None,
) -> list[str]:
    """Check the daily bars of ``expected_sessions``, record and log the findings; return the run's problems.

    A problem is a finding of severity error that this run is the first to see; one already open
    from an earlier run is logged again and does not fail this one.

    :raises PermanentError: ``IBKR_QUALITY_SEVERITIES`` is bad.
    """
    from ibkr_market_data import quality
    from ibkr_market_data.bars import DAILY_TIMEFRAME
    from ibkr_market_data.daily_plan import lookback_start
    from ibkr_market_data.run_summary import short_list

    try:
        rules = rules or quality.rules_from_env()
    except InvalidQualitySettingError as exc:
        raise PermanentError(str(exc)) from None
    ids = sorted(expected_sessions)
    # A delisted symbol has no session after its last one: none is expected of it.
    last_sessions = repository.last_sessions(conn, ids)
    expected_sessions = {
        symbol_id: [day for day in days if symbol_id not in last_sessions or day <= last_sessions[symbol_id]]
        for symbol_id, days in expected_sessions.items()
    }
    all_sessions = [day for days in expected_sessions.values() for day in days]
    if not all_sessions:
        return []
    first, last = min(all_sessions), max(all_sessions)
    since = lookback_start(first, rules.reference_sessions)
    bars = repository.bars_for_checks(conn, ids, DAILY_TIMEFRAME, since, last)
    no_data = repository.no_data_session_dates(conn, ids, DAILY_TIMEFRAME, first, last, settled_only=False)
    revisions = repository.revision_ratios(conn, ids, DAILY_TIMEFRAME, since, last)
    splits = repository.split_price_factors(conn, ids, since, last)
    minutes = (
        repository.intraday_sessions(conn, ONE_MINUTE.name, minute_sessions.scheduled, minute_sessions.zones)
        if minute_sessions
        else {}
    )
    findings = quality.check_all_symbols(
        (
            quality.SymbolData(
                symbol_id=symbol_id,
                symbol=planned.get(symbol_id, str(symbol_id)),
                bars=bars.get(symbol_id, []),
                expected=expected_sessions[symbol_id],
                no_data=no_data.get(symbol_id, ()),
                revision_ratios=revisions.get(symbol_id, {}),
                intraday=minutes.get(symbol_id, {}),
                split_factors=splits.get(symbol_id, {}),
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
        + short_list(f"{finding.symbol} {finding.session.isoformat()} {finding.check}" for finding in errors)
    ]
