"""Load the shipped universe into ``symbols`` and resolve each contract through IB.

A symbol becomes active once IB has given its conId and primary exchange; one IB cannot resolve
stays inactive with the reason, and is reported. See docs/configuration.md.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from psycopg import Connection

from ibkr_market_data import calendars, repository
from ibkr_market_data.contracts import ContractSpec, ResolvedContract
from ibkr_market_data.errors import (
    IbkrContractError,
    IbkrError,
    IbkrPermissionError,
    IbkrRequestError,
    UnknownExchangeError,
)
from ibkr_market_data.universe import UniverseSymbol, load_universe

log = logging.getLogger(__name__)


class ContractResolver(Protocol):
    """What loading needs of the IBKR hook."""

    def resolve_contract(self, spec: ContractSpec) -> ResolvedContract:
        """Return IB's one contract for ``spec``."""


@dataclass
class ResolutionReport:
    """What one load did: symbols upserted, resolved now, and those left unresolved with the reason."""

    loaded: int = 0
    resolved: list[str] = field(default_factory=list)
    unresolved: dict[str, str] = field(default_factory=dict)


def load_symbols(
    conn: Connection, hook: ContractResolver, universe: list[UniverseSymbol] | None = None
) -> ResolutionReport:
    """Upsert the universe, then resolve every symbol that has no conId yet, committing as it goes.

    :param conn: the market-data connection.
    :param hook: resolves contracts (the IBKR hook).
    :param universe: the symbols to load; default the shipped universe.
    """
    report = ResolutionReport()
    report.loaded = repository.upsert_universe(conn, load_universe() if universe is None else universe)
    conn.commit()
    for row in repository.unresolved_symbols(conn):
        spec = ContractSpec(
            symbol=row.symbol,
            exchange=row.exchange,
            primary_exchange=row.primary_exchange,
            currency=row.currency,
            sec_type=row.sec_type,
        )
        try:
            resolved = _resolve(hook, spec)
        except (IbkrContractError, IbkrPermissionError, IbkrRequestError) as exc:
            repository.mark_unresolved(conn, row.id, str(exc))
            report.unresolved[row.symbol] = str(exc)
            log.warning("%s: left inactive, IB could not resolve it: %s", spec, exc)
        else:
            _record_resolution(conn, row, resolved, report)
        conn.commit()
    log.info(
        "Universe: %d symbols loaded, %d resolved now, %d unresolved",
        report.loaded,
        len(report.resolved),
        len(report.unresolved),
    )
    return report


#: Tries per symbol after a dropped connection or a timeout, and the pause before each next try.
RESOLVE_ATTEMPTS = 4
RESOLVE_BACKOFF_SECONDS = (1.0, 3.0, 10.0)


def _resolve(hook: ContractResolver, spec: ContractSpec) -> ResolvedContract:
    """Return ``hook.resolve_contract(spec)``, tried again after a dropped connection or a timeout."""
    for attempt in range(1, RESOLVE_ATTEMPTS + 1):
        try:
            return hook.resolve_contract(spec)
        except IbkrError as exc:
            if not exc.retryable or attempt == RESOLVE_ATTEMPTS:
                raise
            pause = RESOLVE_BACKOFF_SECONDS[min(attempt, len(RESOLVE_BACKOFF_SECONDS)) - 1]
            log.warning("%s: %s; reconnecting and trying again in %.0f s", spec, exc, pause)
            time.sleep(pause)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _record_resolution(
    conn: Connection, row: repository.SymbolRow, resolved: ResolvedContract, report: ResolutionReport
) -> None:
    """Store IB's conId and primary exchange: one row per conId, only on exchanges with a calendar."""
    known = repository.symbol_id_by_con_id(conn, resolved.con_id)
    if known is not None and known != row.id:
        # IB names another primary exchange than the CSV (BHP on CHIXAU): the conId's earlier row is
        # this symbol; keep it and drop the new, empty one.
        repository.delete_unresolved_symbol(conn, row.id)
        report.resolved.append(row.symbol)
        log.info(
            "%s: conId %s is already symbol id %s; kept that one row", row.symbol, resolved.con_id, known
        )
        return
    try:
        calendars.calendar_code(resolved.primary_exchange)
    except UnknownExchangeError as exc:
        reason = f"IB names primary exchange {resolved.primary_exchange!r}: {exc}"
        repository.mark_unresolved(conn, row.id, reason)
        report.unresolved[row.symbol] = reason
        log.warning("%s: left inactive: %s", row.symbol, reason)
        return
    repository.mark_resolved(conn, row.id, resolved.con_id, resolved.primary_exchange)
    report.resolved.append(row.symbol)
