"""Plan which 5min/1hour sessions are built from 1-minute bars and which IB still answers (the cross-check).

See docs/intraday.md#derived-bars.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ibkr_market_data import calendars
from ibkr_market_data.daily_plan import CollectionTarget, DailyPlan, StoredState, intraday_target
from ibkr_market_data.derived import DERIVABLE, DeriveSettings, settings_from_env
from ibkr_market_data.errors import UnknownExchangeError
from ibkr_market_data.timeframes import ONE_MINUTE, Timeframe

if TYPE_CHECKING:
    import psycopg

    from ibkr_market_data.repository import RunContext, SymbolRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Derivation:
    """One derived timeframe of a run: the symbols built from their minutes, and what is stored whole."""

    symbol_ids: frozenset[int]
    #: Per symbol id, the sessions whose bars of this timeframe are stored whole by the schedule.
    complete: Mapping[int, set[dt.date]]


def derive_settings(selected: Timeframe | None) -> DeriveSettings:
    """Return the run's derivation settings: off when the run asks for one timeframe by its param."""
    return settings_from_env() if selected is None else DeriveSettings(enabled=False)


def derived_symbols(
    by_timeframe: Mapping[Timeframe, Sequence[SymbolRow]], settings: DeriveSettings
) -> dict[Timeframe, frozenset[int]]:
    """Return, per derivable timeframe the run collects, the symbols that collect 1-minute bars too."""
    if not settings.enabled or ONE_MINUTE not in by_timeframe:
        return {}
    minute_ids = {row.id for row in by_timeframe[ONE_MINUTE]}
    return {
        tf: frozenset(row.id for row in rows if row.id in minute_ids)
        for tf, rows in by_timeframe.items()
        if tf in DERIVABLE
    }


def ib_settled(
    rows: Sequence[SymbolRow],
    derivation: Derivation,
    settings: DeriveSettings,
    since: dt.date,
    day: dt.date,
) -> dict[int, set[dt.date]]:
    """Return per symbol the sessions IB is not asked for: those stored whole, and those built from minutes.

    Only the cross-check's sample of a derived symbol's sessions is left for IB.
    """
    settled = {symbol_id: set(days) for symbol_id, days in derivation.complete.items()}
    for row in rows:
        if row.id not in derivation.symbol_ids:
            continue
        try:
            sessions = calendars.sessions_between(row.primary_exchange, since, day)
        except UnknownExchangeError:
            continue  # the plan skips it with the reason
        settled.setdefault(row.id, set()).update(
            session for session in sessions if not settings.asks_ib(row.symbol, session)
        )
    return settled


def one_session_per_target(
    plan: DailyPlan, rows: Sequence[SymbolRow], state: StoredState, tf: Timeframe
) -> DailyPlan:
    """Return ``plan`` with each request cut to one unsettled session.

    A request spanning several sessions would bring IB's bars for the derived ones between, which
    would then replace them.
    """
    by_id = {row.id: row for row in rows}
    targets: list[CollectionTarget] = []
    for target in plan.targets:
        settled = state.bars.get(target.symbol_id, ())
        for session in target.session_dates or [target.session_date]:
            if session not in settled:
                one = intraday_target(by_id[target.symbol_id], tf, [session])
                targets.append(dataclasses.replace(one, cross_check=True))
    return dataclasses.replace(plan, targets=targets)


def with_derivation(
    plan: DailyPlan, derivations: Mapping[Timeframe, Derivation], settings: DeriveSettings
) -> DailyPlan:
    """Return the 1-minute ``plan`` whose targets build the derived timeframes their sessions lack."""
    targets = []
    for target in plan.targets:
        sessions = target.session_dates or []
        derive = tuple(
            tf.name
            for tf, derivation in derivations.items()
            if target.symbol_id in derivation.symbol_ids
            and any(
                session not in derivation.complete.get(target.symbol_id, ())
                and not settings.asks_ib(target.symbol, session)
                for session in sessions
            )
        )
        if derive:
            opens = tuple(_open(target.primary_exchange, session) for session in sessions)
            target = dataclasses.replace(target, derive=derive, session_opens=opens)
        targets.append(target)
    return dataclasses.replace(plan, targets=targets)


def derive_stored_sessions(
    conn: psycopg.Connection,
    run: RunContext,
    minute_rows: Sequence[SymbolRow],
    minute_complete: Mapping[int, set[dt.date]],
    derivations: Mapping[Timeframe, Derivation],
    settings: DeriveSettings,
) -> int:
    """Build the derived sessions whose 1-minute session is stored whole already; return how many.

    No request: the minutes are in the database (a halted session settled short counts as whole).
    Idempotent: a session built before is upserted unchanged.
    """
    from ibkr_market_data.attempt import store_derived_sessions
    from ibkr_market_data.daily_plan import intraday_target

    built = 0
    for row in minute_rows:
        for session in sorted(minute_complete.get(row.id, ())):
            if settings.asks_ib(row.symbol, session):
                continue
            derive = tuple(
                tf.name
                for tf, derivation in derivations.items()
                if row.id in derivation.symbol_ids and session not in derivation.complete.get(row.id, ())
            )
            if not derive:
                continue
            target = dataclasses.replace(
                intraday_target(row, ONE_MINUTE, [session]),
                derive=derive,
                session_opens=(_open(row.primary_exchange, session),),
            )
            written = store_derived_sessions(conn, target, {session}, run)
            built += 1 if written else 0
    return built


def _open(exchange: str, session: dt.date) -> str:
    return calendars.session_open(exchange, session).astimezone(dt.UTC).replace(tzinfo=None).isoformat()


def cross_check(conn: psycopg.Connection, run: RunContext, targets: Sequence[CollectionTarget]) -> list[str]:
    """Hold IB's stored 5min/1hour bars of the cross-check's targets against those their minutes build.

    A disagreement is a ``derived_vs_ib`` quality finding (recorded, logged); a session whose
    minutes are not all stored (a failed or halted 1-minute session), or without IB's bars (its
    request failed), is left unchecked. Return the
    run's problems: the findings of severity error this run is the first to see.

    :raises PermanentError: ``IBKR_QUALITY_SEVERITIES`` is bad.
    """
    from ibkr_market_data import derived, quality, repository
    from ibkr_market_data.daily_plan import scheduled_bars
    from ibkr_market_data.errors import InvalidQualitySettingError, PermanentError

    try:
        rules = quality.rules_from_env()
    except InvalidQualitySettingError as exc:
        raise PermanentError(str(exc)) from None
    severity = rules.severities.get(quality.Check.DERIVED_VS_IB, quality.Severity.WARNING)
    findings: dict[str, list[quality.Finding]] = {}
    checked: dict[str, dict[int, list[dt.date]]] = {}
    unchecked = 0
    for target in targets:
        if not target.cross_check:
            continue
        tf, session, zone = target.timeframe, target.session_date, target.time_zone
        minutes = repository.session_bars(conn, target.symbol_id, ONE_MINUTE.name, session, zone)
        if len(minutes) < scheduled_bars(target.primary_exchange, session, ONE_MINUTE):
            unchecked += 1
            continue
        asked = repository.session_bars(conn, target.symbol_id, tf.name, session, zone)
        if not asked:
            unchecked += 1  # IB's answer failed or had no data: nothing of IB's to compare
            continue
        opened = calendars.session_open(target.primary_exchange, session).astimezone(dt.UTC)
        built = derived.aggregate(minutes, tf, zone, opened.replace(tzinfo=None))
        checked.setdefault(tf.name, {}).setdefault(target.symbol_id, []).append(session)
        detail = derived.disagreement(built, asked)
        if detail is not None and severity is not quality.Severity.IGNORE:
            finding = quality.Finding(
                target.symbol_id, target.symbol, session, quality.Check.DERIVED_VS_IB, severity, detail
            )
            findings.setdefault(tf.name, []).append(finding)
    problems: list[str] = []
    for name, sessions in checked.items():
        recorded = repository.record_quality_findings(conn, run, findings.get(name, []), sessions, name)
        for finding in recorded.new + recorded.known:
            log.warning("Data quality (%s, %s): %s", finding.severity, name, finding.describe())
        errors = [finding for finding in recorded.new if finding.severity is quality.Severity.ERROR]
        problems += [f"{finding.symbol} {name} {finding.session} {finding.check}" for finding in errors]
        log.info(
            "Cross-check of %s bars built from 1-minute bars: %d sessions compared with IB's, %d disagree",
            name,
            sum(len(days) for days in sessions.values()),
            len(findings.get(name, [])),
        )
    conn.commit()
    if unchecked:
        log.info(
            "Cross-check: %d sessions left unchecked, their minutes or IB's bars not all stored", unchecked
        )
    return problems


def log_built_and_asked(targets: Sequence[CollectionTarget]) -> None:
    """Log how many 5min/1hour sessions the run's plan built from minutes and how many it asked of IB."""
    built = sum(len(target.derive) * len(target.sessions) for target in targets)
    checked = sum(1 for target in targets if target.cross_check)
    if built or checked:
        log.info(
            "5min/1hour sessions: %d built from the 1-minute answers, %d asked of IB for the cross-check",
            built,
            checked,
        )
