"""The adjustments DAG's task body: fetch ADJUSTED_LAST for the symbols due, store factors and dividends.

See docs/corporate-actions.md#adjusted-prices.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from ibkr_market_data import repository
from ibkr_market_data.adjustments import AdjustmentSchedule, derive, plan_adjustments
from ibkr_market_data.errors import CollectionError, IbkrError, IbkrNoDataError, InvalidRunParamError
from ibkr_market_data.repository import AttemptStatus, RunContext
from ibkr_market_data.tasks.database import market_connection
from ibkr_market_data.tasks.ib_session import ib_session
from ibkr_market_data.tasks.params import as_name_list

log = logging.getLogger(__name__)


def schedule_from(params: Mapping[str, Any]) -> AdjustmentSchedule:
    """Return the schedule with the run's ``max_symbols`` param.

    :raises InvalidRunParamError: ``max_symbols`` is not a whole number from 1.
    """
    value = params.get("max_symbols")
    if value is None or value == "":
        return AdjustmentSchedule()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRunParamError(f"Param 'max_symbols' must be a whole number from 1, got {value!r}")
    return AdjustmentSchedule(max_symbols=value)


def exchange_zone(exchange: str) -> str:
    """Return the exchange's time zone, which names an intraday bar's session; UTC without a calendar."""
    from ibkr_market_data import calendars
    from ibkr_market_data.errors import UnknownExchangeError

    try:
        return calendars.time_zone(exchange)
    except UnknownExchangeError:
        log.warning(
            "No trading calendar for %s: its intraday bars take the factor of their UTC date", exchange
        )
        return "UTC"


def refresh_adjustments(params: Mapping[str, Any], run: RunContext, as_of: dt.datetime) -> dict[str, int]:
    """Request ADJUSTED_LAST for each symbol due at ``as_of``, one request each, and store what it says.

    :param params: the run's params (``symbols``, ``max_symbols``, ``dry_run``).
    :param run: the run's identity, recorded with each fetch.
    :param as_of: the run's moment: what "due" is measured against.
    :return: how many symbols were fetched, left for a later run, without data, failed; dividends found.
    :raises InvalidRunParamError: a param is bad.
    :raises CollectionError: naming each symbol whose request failed, after every symbol had its try,
        when a retry may help.
    :raises PermanentError: the same, when none can (an end date refused, no permission).
    """
    schedule = schedule_from(params)
    asked = as_name_list(params.get("symbols"))
    with market_connection() as conn:
        due, later = plan_adjustments(repository.adjustment_candidates(conn), as_of, schedule, asked)
    for item in due:
        log.info("%s: ADJUSTED_LAST over %s, %s", item.candidate.spec, item.duration, item.reason)
    log.info(
        "%d symbols due, %d left for a later run (max_symbols=%d)", len(due), len(later), schedule.max_symbols
    )
    counts = {"fetched": 0, "later": len(later), "no_data": 0, "failed": 0, "dividends": 0}
    if params.get("dry_run") or not due:
        return counts
    failures: list[tuple[str, IbkrError]] = []
    with ib_session() as (conn, ibkr):
        for item in due:
            candidate = item.candidate
            try:
                bars = ibkr.fetch_adjusted_daily_bars(candidate.spec, item.duration)
            except IbkrNoDataError as exc:
                log.warning(
                    "%s: no ADJUSTED_LAST bars (%s); its factors stay as they were", candidate.spec, exc
                )
                counts["no_data"] += 1
                continue
            except IbkrError as exc:
                log.error("%s: ADJUSTED_LAST failed: %s", candidate.spec, exc)
                failures.append((candidate.spec.symbol, exc))
                continue
            first = min(bar.session_date for bar in bars)
            derivation = derive(repository.stored_days(conn, candidate.symbol_id, first), bars)
            repository.store_adjustments(
                conn,
                candidate.symbol_id,
                derivation,
                requested_from=min(first, candidate.first_session),
                time_zone=exchange_zone(candidate.spec.primary_exchange),
                run=run,
            )
            conn.commit()
            counts["fetched"] += 1
            counts["dividends"] += len(derivation.dividends)
            log.info(
                "%s: %d factors, %d dividends (%s), %d share-basis changes, %d unexplained steps",
                candidate.spec,
                len(derivation.factors),
                len(derivation.dividends),
                ", ".join(f"{d.ex_date} {d.amount}" for d in derivation.dividends) or "none",
                len(derivation.basis_changes),
                len(derivation.unexplained),
            )
            for session in derivation.unexplained:
                log.warning(
                    "%s: the factor steps on %s, neither a dividend nor a split", candidate.spec, session
                )
        if failures:
            from ibkr_market_data.attempt import SymbolOutcome

            counts["failed"] = len(failures)
            reasons = "; ".join(f"{symbol}: {exc}" for symbol, exc in failures)
            # Raised inside the session, which turns a failure no retry mends into a PermanentError.
            raise CollectionError(
                SymbolOutcome(
                    "adjustments",
                    AttemptStatus.FAILED,
                    reason=f"{len(failures)} of {len(due)} ADJUSTED_LAST requests failed: {reasons}",
                ),
                retryable=any(exc.retryable for _, exc in failures),
            )
    return counts
