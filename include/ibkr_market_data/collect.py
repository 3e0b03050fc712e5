"""Collecting one target: request its bars from IB and store them with their log row, atomically.

Airflow-agnostic: the DAG's task turns ``CollectionFailed`` into a retry or a final failure.
Each attempt is one ``collection_logs`` row: ``pending`` is committed first, so a worker that dies
mid-request leaves a visible trace; the bars and the final status commit in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ibkr_market_data import repository, repository_dashboard
from ibkr_market_data.bars import Bar, InvalidBarError
from ibkr_market_data.errors import IbkrError, IbkrNoDataError
from ibkr_market_data.planning import ALREADY_COLLECTED, CollectionTarget, session_timestamp
from ibkr_market_data.repository import RunContext

log = logging.getLogger(__name__)

TIMEFRAME_BY_BAR_SIZE = {"1 day": "1day"}


@dataclass(frozen=True)
class SymbolOutcome:
    symbol: str
    status: str  # completed | no_data | skipped | failed
    records_collected: int = 0
    bars_inserted: int = 0
    bars_revised: int = 0
    reason: str | None = None
    error_code: int | None = None


class CollectionFailed(Exception):
    """The symbol failed; ``retryable`` says whether another try may succeed."""

    def __init__(self, outcome: SymbolOutcome, retryable: bool) -> None:
        super().__init__(f"{outcome.symbol}: {outcome.reason}")
        self.outcome = outcome
        self.retryable = retryable


#: Writes one symbol's bars: ``store(conn, symbol_id, timeframe, bars)``.
BarStore = Callable[[Any, int, str, Sequence[Bar]], repository.UpsertResult]


def collect_target(
    conn: Any, hook: Any, target: CollectionTarget, run: RunContext, store: BarStore | None = None
) -> SymbolOutcome:
    """Fetch and store ``target``'s bars; returns the outcome or raises CollectionFailed.

    ``store`` writes the bars in the attempt's transaction; default ``repository.upsert_bars``.
    """
    timeframe = TIMEFRAME_BY_BAR_SIZE[target.bar_size]
    first, last = target.first_session_date, target.session_date
    window = (session_timestamp(first), session_timestamp(last))
    log_id = repository.start_attempt(conn, run, target.symbol_id, timeframe, *window)
    conn.commit()

    if first == last and repository.symbols_having_bar(conn, [target.symbol_id], timeframe, window[1]):
        # Another run stored it since this run was planned: send nothing.
        repository.finish_attempt(conn, log_id, "skipped", error_message=ALREADY_COLLECTED)
        conn.commit()
        log.info("%s %s: skipped, %s", target.symbol, last, ALREADY_COLLECTED)
        return SymbolOutcome(target.symbol, "skipped", reason=ALREADY_COLLECTED)

    requests_before = hook.requests_sent
    request_started = time.monotonic()
    try:
        bars = hook.fetch_bars(target.contract(), target.end_date_time, target.duration, target.bar_size)
        request_seconds = time.monotonic() - request_started
        wanted = [bar for bar in bars if first <= bar.session_date <= last]
        if not wanted:
            raise IbkrNoDataError(f"IB sent {len(bars)} bars, none for {first}..{last}")
        result = (store or repository.upsert_bars)(conn, target.symbol_id, timeframe, wanted)
        repository.finish_attempt(
            conn,
            log_id,
            "completed",
            records_collected=len(wanted),
            requests_sent=hook.requests_sent - requests_before,
        )
        repository_dashboard.record_request_seconds(conn, log_id, request_seconds)
        conn.commit()
    except IbkrNoDataError as exc:
        conn.rollback()
        outcome = SymbolOutcome(target.symbol, "no_data", reason=str(exc), error_code=exc.code)
        repository.finish_attempt(
            conn,
            log_id,
            "no_data",
            requests_sent=hook.requests_sent - requests_before,
            error_message=exc.reason,
            error_code=exc.code,
        )
        repository_dashboard.record_request_seconds(conn, log_id, time.monotonic() - request_started)
        conn.commit()
        log.info("%s %s: no data from IB (%s)", target.symbol, last, exc.reason)
        return outcome
    except (IbkrError, InvalidBarError) as exc:
        conn.rollback()
        code = exc.code if isinstance(exc, IbkrError) else None
        retryable = isinstance(exc, IbkrError) and exc.retryable
        repository.finish_attempt(
            conn,
            log_id,
            "failed",
            requests_sent=hook.requests_sent - requests_before,
            error_message=str(exc),
            error_code=code,
        )
        repository_dashboard.record_request_seconds(conn, log_id, time.monotonic() - request_started)
        conn.commit()
        log.warning(
            "%s %s: failed (%s): %s", target.symbol, last, "will retry" if retryable else "final", exc
        )
        raise CollectionFailed(
            SymbolOutcome(target.symbol, "failed", reason=str(exc), error_code=code), retryable
        ) from exc
    log.info(
        "%s %s: collected %d bars (%d new, %d revised)",
        target.symbol,
        last,
        len(wanted),
        result.inserted,
        result.revised,
    )
    return SymbolOutcome(
        target.symbol,
        "completed",
        records_collected=len(wanted),
        bars_inserted=result.inserted,
        bars_revised=result.revised,
    )
