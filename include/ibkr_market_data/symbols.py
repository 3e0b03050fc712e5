"""Loading the shipped universe into ``symbols`` and resolving each contract through IB.

Loading is idempotent. A symbol becomes active only once IB has given its conId and primary
exchange, so every later request names the contract unambiguously. Symbols IB cannot resolve stay
inactive with the reason, and are reported, never silently dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from psycopg import Connection

from ibkr_market_data import repository
from ibkr_market_data.contracts import ContractSpec, ResolvedContract
from ibkr_market_data.errors import IbkrContractError, IbkrPermissionError, IbkrRequestError
from ibkr_market_data.universe import UniverseSymbol, load_universe

log = logging.getLogger(__name__)


class ContractResolver(Protocol):
    """What loading needs of the IBKR hook."""

    def resolve_contract(self, spec: ContractSpec) -> ResolvedContract: ...


@dataclass
class ResolutionReport:
    loaded: int = 0
    resolved: list[str] = field(default_factory=list)
    unresolved: dict[str, str] = field(default_factory=dict)


def load_symbols(
    conn: Connection, hook: ContractResolver, universe: list[UniverseSymbol] | None = None
) -> ResolutionReport:
    """Upsert the universe, then resolve every symbol that has no conId yet; commits as it goes."""
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
            resolved = hook.resolve_contract(spec)
        except (IbkrContractError, IbkrPermissionError, IbkrRequestError) as exc:
            repository.mark_unresolved(conn, row.id, str(exc))
            report.unresolved[row.symbol] = str(exc)
            log.warning("%s: left inactive, IB could not resolve it: %s", spec, exc)
        else:
            repository.mark_resolved(conn, row.id, resolved.con_id, resolved.primary_exchange)
            report.resolved.append(row.symbol)
        conn.commit()
    log.info(
        "Universe: %d symbols loaded, %d resolved now, %d unresolved",
        report.loaded,
        len(report.resolved),
        len(report.unresolved),
    )
    return report
