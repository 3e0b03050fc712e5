"""The shipped symbol universe: ASX 200, NASDAQ-100 and major ETFs, one CSV file per list.

Every file has a header row and the columns of ``COLUMNS``, and may add the membership period's
``from`` and ``to``. See docs/configuration.md#the-symbol-universe.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ibkr_market_data import calendars
from ibkr_market_data.errors import InvalidUniverseError, UnknownExchangeError

UNIVERSE_FILES = ("asx200.csv", "nasdaq100.csv", "etfs.csv")
COLUMNS = (
    "symbol",
    "sec_type",
    "exchange",
    "primary_exchange",
    "currency",
    "con_id",
    "priority",
    "asset_class",
    "name",
)
#: Optional columns: the first and last day of the symbol's membership of the list (empty: open).
PERIOD_COLUMNS = ("from", "to")
# Every column but the descriptive name must hold a value.
REQUIRED_VALUES = COLUMNS[:-1]
# The symbols table's column widths (migration 0001): a long value is refused here, by name,
# instead of failing the whole load in the database.
MAX_LENGTHS = {"symbol": 32, "sec_type": 8, "exchange": 16, "primary_exchange": 16, "asset_class": 16}
MAX_PRIORITY = 32767  # SMALLINT
MAX_CON_ID = 2**63 - 1  # BIGINT


@dataclass(frozen=True)
class Membership:
    """A symbol's membership of one list (universe file): from ``valid_from`` to ``valid_to``, inclusive.

    None at either end leaves it open.
    """

    source_list: str
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None

    def covers(self, day: dt.date) -> bool:
        """Return whether ``day`` falls inside the period."""
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )


@dataclass(frozen=True)
class UniverseSymbol:
    """One row of a universe file, the list it came from, and the period of its membership."""

    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    con_id: int
    priority: int
    asset_class: str
    name: str
    source_list: str
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    #: The symbol's memberships of other lists that name it too (its first row wins the other columns).
    other_memberships: tuple[Membership, ...] = ()

    @property
    def memberships(self) -> tuple[Membership, ...]:
        """Return every list membership of the symbol: its own row's first."""
        return (Membership(self.source_list, self.valid_from, self.valid_to), *self.other_memberships)


def load_universe(files: tuple[str, ...] = UNIVERSE_FILES) -> list[UniverseSymbol]:
    """Return all symbols of the shipped lists, in file order; a symbol listed twice keeps its first row."""
    package = resources.files(__package__)
    return _merge((file_name, package.joinpath(file_name).read_text(encoding="utf-8")) for file_name in files)


def load_universe_files(paths: Iterable[Path]) -> list[UniverseSymbol]:
    """Return the symbols of universe CSV files given by path (same columns and rules as the shipped lists).

    :raises InvalidUniverseError: a row is short, lacks a required value, holds one of the wrong kind
        or gives a membership period that ends before it starts; the message names ``file:line``
        and the column.
    """
    return _merge((path.name, path.read_text(encoding="utf-8")) for path in paths)


def _merge(named_texts: Iterable[tuple[str, str]]) -> list[UniverseSymbol]:
    seen: dict[tuple[str, str], UniverseSymbol] = {}
    for file_name, text in named_texts:
        for entry in _parse(file_name, text):
            key = (entry.symbol, entry.primary_exchange)
            first = seen.setdefault(key, entry)
            listed = {membership.source_list for membership in first.memberships}
            if first is not entry and entry.source_list not in listed:
                seen[key] = dataclasses.replace(
                    first, other_memberships=(*first.other_memberships, *entry.memberships)
                )
    return list(seen.values())


def _parse(file_name: str, text: str) -> list[UniverseSymbol]:
    if len(file_name.removesuffix(".csv")) > 32:
        raise InvalidUniverseError(
            f"{file_name}: the file name (the symbols' source list) is longer than 32 characters"
        )
    # Not str.splitlines(): it also splits on U+0085, U+2028 and the like inside a value.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing_columns = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
    if missing_columns:
        raise InvalidUniverseError(
            f"{file_name}:1: the header lacks column(s) {', '.join(missing_columns)}; "
            f"expected {','.join(COLUMNS)}"
        )
    unknown_columns = [column for column in reader.fieldnames or () if column not in COLUMNS + PERIOD_COLUMNS]
    if unknown_columns:
        raise InvalidUniverseError(
            f"{file_name}:1: the header has unknown column(s) {', '.join(unknown_columns)}; "
            f"known: {','.join(COLUMNS + PERIOD_COLUMNS)}"
        )
    entries = []
    for row in reader:
        # DictReader counts physical lines, so a quoted field spanning lines keeps the right number.
        entries.append(
            _parse_row(file_name, reader.line_num, row, source_list=file_name.removesuffix(".csv"))
        )
    return entries


def _parse_row(
    file_name: str, line_no: int, row: dict[str | None, object], source_list: str
) -> UniverseSymbol:
    where = f"{file_name}:{line_no}"
    if row.get(None):
        header = [column for column in row if column is not None]
        raise InvalidUniverseError(f"{where}: the row has more fields than the header's {len(header)}")
    values: dict[str, str] = {}
    for column in COLUMNS:
        value = row.get(column)
        if not isinstance(value, str):
            # csv fills the columns of a short row with None.
            raise InvalidUniverseError(f"{where}: column {column!r} is missing (the row has too few fields)")
        value = value.strip()
        if "\x00" in value:
            raise InvalidUniverseError(f"{where}: column {column!r} contains a NUL character")
        if not value and column in REQUIRED_VALUES:
            raise InvalidUniverseError(f"{where}: column {column!r} is empty")
        if len(value) > MAX_LENGTHS.get(column, len(value)):
            raise InvalidUniverseError(
                f"{where}: column {column!r} is {len(value)} characters long, at most {MAX_LENGTHS[column]}"
            )
        values[column] = value
    valid_from, valid_to = _period(where, row)
    if len(values["currency"]) != 3:
        raise InvalidUniverseError(
            f"{where}: column 'currency' is {values['currency']!r}, not a 3-letter code"
        )
    try:
        calendars.calendar_code(values["primary_exchange"])
    except UnknownExchangeError as exc:
        # Its sessions could never be named: refused here, not skipped by every run.
        raise InvalidUniverseError(f"{where}: column 'primary_exchange': {exc}") from None
    return UniverseSymbol(
        symbol=values["symbol"],
        sec_type=values["sec_type"],
        exchange=values["exchange"],
        primary_exchange=values["primary_exchange"],
        currency=values["currency"],
        con_id=_positive_int(where, "con_id", values["con_id"], MAX_CON_ID),
        priority=_positive_int(where, "priority", values["priority"], MAX_PRIORITY),
        asset_class=values["asset_class"],
        name=values["name"],
        source_list=source_list,
        valid_from=valid_from,
        valid_to=valid_to,
    )


def _period(where: str, row: dict[str | None, object]) -> tuple[dt.date | None, dt.date | None]:
    """Return the row's optional ``from`` and ``to`` dates, refusing a malformed or reversed period."""
    days: list[dt.date | None] = []
    for column in PERIOD_COLUMNS:
        value = row.get(column)
        text = value.strip() if isinstance(value, str) else ""
        try:
            days.append(dt.date.fromisoformat(text) if text else None)
        except ValueError:
            raise InvalidUniverseError(
                f"{where}: column {column!r} is {text!r}, not a date YYYY-MM-DD"
            ) from None
    valid_from, valid_to = days
    if valid_from is not None and valid_to is not None and valid_to < valid_from:
        raise InvalidUniverseError(
            f"{where}: column 'to' ({valid_to.isoformat()}) is before column 'from' "
            f"({valid_from.isoformat()}); the membership period must run forward"
        )
    return valid_from, valid_to


def _positive_int(where: str, column: str, value: str, maximum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidUniverseError(f"{where}: column {column!r} is {value!r}, not a whole number") from None
    if not 1 <= number <= maximum:
        raise InvalidUniverseError(f"{where}: column {column!r} is {number}, must be 1..{maximum}")
    return number
