"""Load the universe files into ``symbols`` and resolve each contract through IB.

A symbol becomes active once IB has given its conId and primary exchange; one IB cannot resolve
stays inactive with the reason. The files are the source of truth: a symbol they no longer list
becomes inactive, its history kept. A gateway outage is waited out. See docs/configuration.md
and docs/corporate-actions.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
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
from ibkr_market_data.known_actions import KnownAction, apply_known_actions, apply_renames
from ibkr_market_data.universe import UniverseSymbol, load_universe

log = logging.getLogger(__name__)


class ContractResolver(Protocol):
    """What loading needs of the IBKR hook."""

    def resolve_contract(self, spec: ContractSpec) -> ResolvedContract:
        """Return IB's one contract for ``spec``."""


@dataclass
class ResolutionReport:
    """What one load did: symbols upserted, resolved now, refused, never answered, and retired.

    ``unresolved``: IB answered that it cannot resolve them (left inactive with the reason).
    ``pending``: IB could not be asked (an outage outlasting ``RESOLVE_OUTAGE_SECONDS`` after IB had
    answered for others); they stay as they were and the next load asks again.
    """

    loaded: int = 0
    resolved: list[str] = field(default_factory=list)
    unresolved: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    #: Active symbols no universe file lists any more: now inactive, their bars kept.
    retired: list[str] = field(default_factory=list)
    #: Symbols retired earlier that a universe file lists again: active again.
    returned: list[str] = field(default_factory=list)
    #: Ticker changes of the file of known actions applied now (``OLD -> NEW``).
    renamed: list[str] = field(default_factory=list)
    #: Other known actions recorded now.
    known_actions: int = 0


def load_symbols(
    conn: Connection,
    hook: ContractResolver,
    universe: list[UniverseSymbol] | None = None,
    known_actions: Sequence[KnownAction] = (),
) -> ResolutionReport:
    """Upsert the universe and resolve its new symbols; retire the symbols it no longer lists.

    Commits as it goes. The universe is the whole truth of what is collected: an active symbol
    not in it becomes inactive (``REMOVED_FROM_UNIVERSE``), one retired so and listed again comes
    back. Each symbol's list memberships (the optional ``from`` / ``to``) are replaced by the files'.

    An outage of TWS / IB Gateway is waited out (``GatewayOutage``). One that outlasts it leaves the
    remaining symbols to the next load, unless IB never answered in this load: then it is no
    symbol's failure but an unreachable gateway, and it is raised.

    :param conn: the market-data connection.
    :param hook: resolves contracts (the IBKR hook).
    :param universe: the symbols to load; default the shipped universe.
    :param known_actions: the file of known corporate actions' rows (``known_actions``): ticker
        changes rename their symbol first, the others are recorded once the universe is loaded.
    :raises BadInputError: a known action names a symbol that is not loaded.
    :raises IbkrError: a passing failure outlasted ``RESOLVE_OUTAGE_SECONDS`` before IB's first answer.
    """
    report = ResolutionReport()
    entries = load_universe() if universe is None else universe
    report.renamed = apply_renames(conn, known_actions)
    report.loaded = repository.upsert_universe(conn, entries)
    ids = repository.universe_symbol_ids(conn, entries)
    conn.commit()
    outage = GatewayOutage()
    for row in repository.unresolved_symbols(conn):
        if row.id not in ids.values():
            continue  # no universe file lists it any more: nothing to resolve
        spec = row.listed_contract()
        try:
            resolved = _resolve(hook, spec, outage)
        except (IbkrContractError, IbkrPermissionError, IbkrRequestError) as exc:
            repository.mark_unresolved(conn, row.id, str(exc))
            report.unresolved[row.symbol] = str(exc)
            log.warning("%s: left inactive, IB could not resolve it: %s", spec, exc)
        except IbkrError as exc:
            if not (report.resolved or report.unresolved):
                raise  # IB never answered this load: the gateway is unreachable, not this symbol
            # Not IB's answer about the symbol: it stays unresolved without a reason, asked again next load.
            report.pending[row.symbol] = str(exc)
            log.warning("%s: not resolved yet, IB could not be asked: %s", spec, exc)
        else:
            kept = _record_resolution(conn, row, resolved, report)
            ids = {key: kept if symbol_id == row.id else symbol_id for key, symbol_id in ids.items()}
        conn.commit()
    _settle_membership(conn, entries, ids, report)
    report.known_actions = apply_known_actions(conn, known_actions)
    log.info(
        "Universe: %d symbols loaded, %d resolved now, %d unresolved, %d not asked (IB unreachable), "
        "%d retired, %d listed again",
        report.loaded,
        len(report.resolved),
        len(report.unresolved),
        len(report.pending),
        len(report.retired),
        len(report.returned),
    )
    return report


def _settle_membership(
    conn: Connection,
    entries: list[UniverseSymbol],
    ids: dict[tuple[str, str, str], int],
    report: ResolutionReport,
) -> None:
    """Record the universe's list memberships, bring back returned symbols and retire removed ones."""
    memberships = {
        ids[key]: entry.memberships
        for entry in entries
        if (key := (entry.symbol, entry.primary_exchange, entry.currency)) in ids
    }
    repository.record_memberships(conn, memberships)
    report.returned = repository.reactivate_returned(conn, memberships.keys())
    report.retired = repository.retire_symbols_not_in(conn, memberships.keys())
    conn.commit()
    for symbol in report.returned:
        log.info("%s: listed in the universe files again; active again", symbol)
    if report.retired:
        log.warning(
            "%d symbols are in no universe file any more: inactive from now on, their bars kept: %s",
            len(report.retired),
            ", ".join(report.retired[:20])
            + (f" and {len(report.retired) - 20} more" if len(report.retired) > 20 else ""),
        )


#: How long an outage of TWS / IB Gateway is waited out: IB Gateway's nightly restart takes 1-2 min.
RESOLVE_OUTAGE_SECONDS = 180.0
#: The pauses between tries while it lasts (the last one repeats).
RESOLVE_BACKOFF_SECONDS = (1.0, 3.0, 10.0, 30.0)


class GatewayOutage:
    """How long requests have failed for a passing reason (a dropped socket, a timeout), across symbols.

    Each symbol waits for the gateway while the outage is younger than ``limit``; once it is older,
    each remaining symbol gets one try, and the first success ends the outage.
    """

    def __init__(self, limit: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = RESOLVE_OUTAGE_SECONDS if limit is None else limit
        self._clock = clock
        self._since: float | None = None

    def failed(self, tries: int) -> float | None:
        """Return the pause before the next try after ``tries`` failed ones, or None to give up."""
        now = self._clock()
        if self._since is None:
            self._since = now
        if now - self._since >= self.limit:
            return None
        pause = RESOLVE_BACKOFF_SECONDS[min(tries, len(RESOLVE_BACKOFF_SECONDS)) - 1]
        return min(pause, self._since + self.limit - now)

    def ended(self) -> None:
        """Note a request that succeeded: the gateway is back."""
        self._since = None


def _resolve(hook: ContractResolver, spec: ContractSpec, outage: GatewayOutage) -> ResolvedContract:
    """Return ``hook.resolve_contract(spec)``, tried again while a dropped connection or timeout lasts."""
    tries = 0
    while True:
        try:
            resolved = hook.resolve_contract(spec)
        except IbkrError as exc:
            if not exc.retryable:
                outage.ended()  # IB answered
                raise
            tries += 1
            pause = outage.failed(tries)
            if pause is None:
                raise
            log.warning("%s: %s; reconnecting and trying again in %.1f s", spec, exc, pause)
            time.sleep(pause)
        else:
            outage.ended()
            return resolved


def _record_resolution(
    conn: Connection, row: repository.SymbolRow, resolved: ResolvedContract, report: ResolutionReport
) -> int:
    """Store IB's conId and primary exchange: one row per conId, only on exchanges with a calendar.

    Return the id of the symbol the row is: its own, or the earlier row with the same conId.
    """
    known = repository.symbol_id_by_con_id(conn, resolved.con_id)
    if known is not None and known != row.id:
        # IB names another primary exchange than the CSV (BHP on CHIXAU): the conId's earlier row is
        # this symbol; keep it and drop the new, empty one.
        repository.delete_unresolved_symbol(conn, row.id)
        report.resolved.append(row.symbol)
        log.info(
            "%s: conId %s is already symbol id %s; kept that one row", row.symbol, resolved.con_id, known
        )
        return known
    try:
        calendars.calendar_code(resolved.primary_exchange)
    except UnknownExchangeError as exc:
        reason = f"IB names primary exchange {resolved.primary_exchange!r}: {exc}"
        repository.mark_unresolved(conn, row.id, reason)
        report.unresolved[row.symbol] = reason
        log.warning("%s: left inactive: %s", row.symbol, reason)
        return row.id
    repository.mark_resolved(conn, row.id, resolved.con_id, resolved.primary_exchange)
    report.resolved.append(row.symbol)
    return row.id
