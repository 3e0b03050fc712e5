"""Corporate actions an operator records in a file (``IBKR_CORPORATE_ACTIONS_FILE``), applied at load-symbols.

For what IB does not announce (a ticker change) or what should not wait for the lookback (a split).
Each row is checked before anything is written; a bad one is refused naming ``file:line``.
See docs/corporate-actions.md#a-file-of-known-actions.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

from ibkr_market_data import calendars, repository
from ibkr_market_data.corporate_actions import check_kind
from ibkr_market_data.errors import BadInputError, UnknownCorporateActionKindError

if TYPE_CHECKING:
    from psycopg import Connection

log = logging.getLogger(__name__)

#: The environment variable naming the file; unset or empty: no file.
ACTIONS_FILE_VARIABLE = "IBKR_CORPORATE_ACTIONS_FILE"
COLUMNS = ("symbol", "primary_exchange", "kind", "effective_session")
OPTIONAL_COLUMNS = ("ratio", "amount", "new_symbol", "new_con_id", "note")
#: ``corporate_actions.detected_by`` of a row from the file.
DETECTED_BY_FILE = "actions file"


@dataclass(frozen=True)
class KnownAction:
    """One row of the file, checked."""

    where: str  # file:line
    symbol: str
    primary_exchange: str
    kind: str
    effective_session: dt.date
    ratio: Decimal | None = None
    amount: Decimal | None = None
    new_symbol: str = ""
    new_con_id: int | None = None
    note: str = ""


def read_known_actions(environ: Mapping[str, str] = os.environ) -> list[KnownAction]:
    """Return the rows of the file ``IBKR_CORPORATE_ACTIONS_FILE`` names; none when it is unset.

    :raises BadInputError: the file cannot be read, or a row is bad; the message names ``file:line``.
    """
    name = environ.get(ACTIONS_FILE_VARIABLE, "").strip()
    if not name:
        return []
    path = Path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInputError(f"{ACTIONS_FILE_VARIABLE}={name}: {exc.strerror or exc}") from None
    return parse_known_actions(path.name, text)


def parse_known_actions(file_name: str, text: str) -> list[KnownAction]:
    """Return the checked rows of a known-actions file.

    :raises BadInputError: naming ``file:line`` and the column of the first bad row.
    """
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = list(reader.fieldnames or ())
    missing = [column for column in COLUMNS if column not in header]
    unknown = [column for column in header if column not in COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        raise BadInputError(
            f"{file_name}:1: the header must have {','.join(COLUMNS)} and may add "
            f"{','.join(OPTIONAL_COLUMNS)}; missing: {', '.join(missing) or 'none'}, "
            f"unknown: {', '.join(unknown) or 'none'}"
        )
    return [_parse_row(f"{file_name}:{reader.line_num}", row) for row in reader]


def _parse_row(where: str, row: Mapping[str | None, object]) -> KnownAction:
    values = {
        key: value.strip() for key, value in row.items() if isinstance(key, str) and isinstance(value, str)
    }
    for column in COLUMNS:
        if not values.get(column):
            raise BadInputError(f"{where}: column {column!r} is empty")
    try:
        kind = check_kind(values["kind"])
    except UnknownCorporateActionKindError as exc:
        raise BadInputError(f"{where}: column 'kind': {exc}") from None
    try:
        effective = dt.date.fromisoformat(values["effective_session"])
    except ValueError:
        raise BadInputError(
            f"{where}: column 'effective_session' is {values['effective_session']!r}, not a date YYYY-MM-DD"
        ) from None
    action = KnownAction(
        where=where,
        symbol=values["symbol"],
        primary_exchange=values["primary_exchange"].upper(),
        kind=kind,
        effective_session=effective,
        ratio=_decimal(where, "ratio", values.get("ratio", "")),
        amount=_decimal(where, "amount", values.get("amount", "")),
        new_symbol=values.get("new_symbol", ""),
        new_con_id=_con_id(where, values.get("new_con_id", "")),
        note=values.get("note", ""),
    )
    required = {
        "split": "ratio",
        "dividend": "amount",
        "ticker_change": "new_symbol",
        "con_id_change": "new_con_id",
    }
    needed = required.get(kind)
    if needed is not None and not getattr(action, needed):
        raise BadInputError(f"{where}: a {kind} needs column {needed!r}")
    if kind == "split" and action.ratio == 1:
        raise BadInputError(f"{where}: column 'ratio' is 1: a split changes the number of shares")
    return action


def _decimal(where: str, column: str, text: str) -> Decimal | None:
    if not text:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = Decimal(-1)
    if not number.is_finite() or number <= 0:
        raise BadInputError(f"{where}: column {column!r} is {text!r}, not a number above 0")
    return number


def _con_id(where: str, text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or int(text) == 0:
        raise BadInputError(f"{where}: column 'new_con_id' is {text!r}, not a positive whole number")
    return int(text)


def apply_renames(conn: Connection, actions: Sequence[KnownAction]) -> list[str]:
    """Rename the symbols of the file's ticker changes (before the universe is upserted); return the changes.

    The symbol keeps its id, so its history continues under the new ticker. A rename whose new
    ticker already has a row, or whose old one has none, changes nothing.
    """
    done = []
    for action in actions:
        if action.kind != "ticker_change":
            continue
        renamed = repository.rename_symbol(conn, action.symbol, action.primary_exchange, action.new_symbol)
        if renamed is None:
            continue
        repository.record_corporate_action(
            conn,
            renamed,
            "ticker_change",
            action.effective_session,
            DETECTED_BY_FILE,
            details={"old_symbol": action.symbol, "new_symbol": action.new_symbol, "note": action.note},
        )
        done.append(f"{action.symbol} -> {action.new_symbol}")
        log.info(
            "%s: ticker %s is %s from %s",
            action.where,
            action.symbol,
            action.new_symbol,
            action.effective_session,
        )
    conn.commit()
    return done


def apply_known_actions(conn: Connection, actions: Sequence[KnownAction]) -> int:
    """Record the file's other actions, each once, and do what each means; return how many were new.

    A split is recorded with its history still to fetch again (the next daily run does it); a
    delisting makes the symbol inactive with the session before; a conId change records the new
    identity; a dividend is recorded.

    :raises BadInputError: a row names a symbol the symbols table does not have.
    """
    recorded = 0
    for action in actions:
        if action.kind == "ticker_change":
            continue
        symbol_id = repository.symbol_id_by_listing(conn, action.symbol, action.primary_exchange)
        if symbol_id is None:
            raise BadInputError(
                f"{action.where}: no symbol {action.symbol} on {action.primary_exchange} is loaded; "
                "add it to the universe files"
            )
        row = repository.symbols_by_id(conn, [symbol_id])[symbol_id]
        details: dict[str, object] = {"note": action.note} if action.note else {}
        if action.kind == "split":
            details["rebase"] = "pending"
        elif action.kind == "con_id_change":
            details |= {"old_con_id": row.con_id, "new_con_id": action.new_con_id}
        action_id = repository.record_corporate_action(
            conn,
            symbol_id,
            action.kind,
            action.effective_session,
            DETECTED_BY_FILE,
            ratio=action.ratio,
            amount=action.amount,
            details=details,
        )
        if action_id is None:
            continue  # recorded already, by the file or by IB's answers
        recorded += 1
        if action.kind == "delisting":
            last = calendars.previous_session(action.primary_exchange, action.effective_session)
            reason = f"delisted from {action.effective_session.isoformat()} ({action.where})"
            repository.mark_delisted(conn, symbol_id, row.con_id, last, reason)
        elif action.kind == "con_id_change" and row.con_id is not None and action.new_con_id is not None:
            repository.change_con_id(conn, symbol_id, row.con_id, action.new_con_id, action.effective_session)
        log.info(
            "%s: recorded %s of %s from %s",
            action.where,
            action.kind,
            action.symbol,
            action.effective_session,
        )
    conn.commit()
    return recorded
