"""Ask IB again what each symbol is: a new conId is an identity change, no definition is a delisting.

Neither fails the caller: every outcome is recorded (``symbol_identities``, ``corporate_actions``,
``symbols``) and returned; a symbol IB could not be asked about is left as it was.
See docs/corporate-actions.md#identity-over-time.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ibkr_market_data import repository
from ibkr_market_data.corporate_actions import first_session_after
from ibkr_market_data.errors import IbkrError, IbkrUnknownContractError

if TYPE_CHECKING:
    from psycopg import Connection

    from ibkr_market_data.repository import SymbolRow
    from ibkr_market_data.symbols import ContractResolver

log = logging.getLogger(__name__)

#: A symbol's resolution is asked again once it is this old: IB does not announce a new conId.
RESOLUTION_MAX_AGE = dt.timedelta(days=7)
#: At most this many are asked per run, oldest first, so a universe loaded at once spreads out.
RECHECKS_PER_RUN = 500


class IdentityStatus(enum.StrEnum):
    """What asking IB again found."""

    UNCHANGED = "unchanged"
    CON_ID_CHANGE = "con_id_change"
    DELISTED = "delisted"
    NOT_ASKED = "not_asked"  # IB could not be asked (a dropped connection, a timeout ...)


@dataclass(frozen=True)
class IdentityOutcome:
    """One symbol's re-resolution: its status, and the conIds and sessions it recorded."""

    symbol_id: int
    symbol: str
    status: IdentityStatus
    old_con_id: int | None = None
    new_con_id: int | None = None
    effective_session: dt.date | None = None
    last_session: dt.date | None = None
    reason: str = ""


def recheck_identities(
    conn: Connection,
    resolver: ContractResolver,
    rows: Sequence[SymbolRow],
    today: dt.date,
    detected_by: str,
) -> list[IdentityOutcome]:
    """Resolve each of ``rows`` again by its listing (not its conId) and record what changed; commit each.

    A change is dated the first session after the symbol's newest stored daily bar (at most
    ``today``): the bars before were served under the old terms.

    :param conn: the market-data connection.
    :param resolver: asks IB for contract details (the IBKR hook).
    :param rows: the symbols to ask about.
    :param today: the latest session a change can be dated (the run's trading date).
    :param detected_by: how the ``corporate_actions`` rows say the change was found.
    """
    outcomes = []
    for row in rows:
        outcome = _recheck(conn, resolver, row, today, detected_by)
        conn.commit()
        outcomes.append(outcome)
    return outcomes


def _recheck(
    conn: Connection, resolver: ContractResolver, row: SymbolRow, today: dt.date, detected_by: str
) -> IdentityOutcome:
    spec = row.listed_contract()
    try:
        resolved = resolver.resolve_contract(spec)
    except IbkrUnknownContractError as exc:
        return _record_delisting(conn, row, today, detected_by, str(exc))
    except IbkrError as exc:
        log.warning("%s: IB could not be asked what it is now (%s); asked again next time", row.symbol, exc)
        return IdentityOutcome(row.id, row.symbol, IdentityStatus.NOT_ASKED, row.con_id, reason=str(exc))
    if row.con_id is None or resolved.con_id == row.con_id:
        repository.confirm_resolution(conn, row.id, resolved.con_id)
        return IdentityOutcome(row.id, row.symbol, IdentityStatus.UNCHANGED, row.con_id, resolved.con_id)
    holder = repository.symbol_id_by_con_id(conn, resolved.con_id)
    if holder is not None and holder != row.id:
        reason = f"IB now names conId {resolved.con_id}, which symbol id {holder} has; left as it was"
        log.warning("%s: %s", row.symbol, reason)
        return IdentityOutcome(row.id, row.symbol, IdentityStatus.NOT_ASKED, row.con_id, reason=reason)
    last = repository.last_stored_sessions(conn, [row.id]).get(row.id)
    effective = first_session_after(row.primary_exchange, last, today) if last else today
    repository.change_con_id(conn, row.id, row.con_id, resolved.con_id, effective)
    repository.record_corporate_action(
        conn,
        row.id,
        "con_id_change",
        effective,
        detected_by,
        details={"old_con_id": row.con_id, "new_con_id": resolved.con_id},
    )
    log.warning(
        "%s: IB gives it conId %s now (was %s); recorded from session %s, its history kept under one symbol",
        row.symbol,
        resolved.con_id,
        row.con_id,
        effective,
    )
    return IdentityOutcome(
        row.id,
        row.symbol,
        IdentityStatus.CON_ID_CHANGE,
        row.con_id,
        resolved.con_id,
        effective_session=effective,
        last_session=last,
    )


def _record_delisting(
    conn: Connection, row: SymbolRow, today: dt.date, detected_by: str, message: str
) -> IdentityOutcome:
    last = repository.last_stored_sessions(conn, [row.id]).get(row.id)
    effective = first_session_after(row.primary_exchange, last, today) if last else today
    reason = (
        f"delisted: IB has no security definition for it as of {today.isoformat()}; "
        f"last session {last.isoformat() if last else 'none stored'}"
    )
    repository.mark_delisted(conn, row.id, row.con_id, last, reason)
    repository.record_corporate_action(
        conn,
        row.id,
        "delisting",
        effective,
        detected_by,
        details={
            "con_id": row.con_id,
            "last_session": last.isoformat() if last else None,
            "ib_message": message,
        },
    )
    log.warning("%s: %s; inactive from now on, its history kept", row.symbol, reason)
    return IdentityOutcome(
        row.id,
        row.symbol,
        IdentityStatus.DELISTED,
        row.con_id,
        effective_session=effective,
        last_session=last,
        reason=reason,
    )


def due_for_recheck(conn: Connection, now: dt.datetime) -> list[SymbolRow]:
    """Return the active symbols whose last resolution is older than ``RESOLUTION_MAX_AGE``, oldest first.

    At most ``RECHECKS_PER_RUN``; the others wait for the next run.
    """
    return repository.symbols_resolved_before(conn, now - RESOLUTION_MAX_AGE, RECHECKS_PER_RUN)
