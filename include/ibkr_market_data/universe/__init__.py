"""The shipped symbol universe: ASX 200, NASDAQ-100 and major ETFs, one CSV file per list.

Every file has a header row and the columns of ``COLUMNS``. See docs/configuration.md.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ibkr_market_data import calendars
from ibkr_market_data.errors import UnknownExchangeError

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
# Every column but the descriptive name must hold a value.
REQUIRED_VALUES = COLUMNS[:-1]
# The symbols table's column widths (migration 0001): a long value is refused here, by name,
# instead of failing the whole load in the database.
MAX_LENGTHS = {"symbol": 32, "sec_type": 8, "exchange": 16, "primary_exchange": 16, "asset_class": 16}
MAX_PRIORITY = 32767  # SMALLINT
MAX_CON_ID = 2**63 - 1  # BIGINT


@dataclass(frozen=True)
class UniverseSymbol:
    """One row of a universe file, and the list it came from."""

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


def load_universe(files: tuple[str, ...] = UNIVERSE_FILES) -> list[UniverseSymbol]:
    """Return all symbols of the shipped lists, in file order; a symbol listed twice keeps its first row."""
    package = resources.files(__package__)
    return _merge((file_name, package.joinpath(file_name).read_text(encoding="utf-8")) for file_name in files)


def load_universe_files(paths: Iterable[Path]) -> list[UniverseSymbol]:
    """Return the symbols of universe CSV files given by path (same columns and rules as the shipped lists).

    :raises ValueError: a row is short, lacks a required value or holds one of the wrong kind; the
        message names ``file:line`` and the column.
    """
    return _merge((path.name, path.read_text(encoding="utf-8")) for path in paths)


def _merge(named_texts: Iterable[tuple[str, str]]) -> list[UniverseSymbol]:
    seen: dict[tuple[str, str], UniverseSymbol] = {}
    for file_name, text in named_texts:
        for entry in _parse(file_name, text):
            seen.setdefault((entry.symbol, entry.primary_exchange), entry)
    return list(seen.values())


def _parse(file_name: str, text: str) -> list[UniverseSymbol]:
    if len(file_name.removesuffix(".csv")) > 32:
        raise ValueError(
            f"{file_name}: the file name (the symbols' source list) is longer than 32 characters"
        )
    # Not str.splitlines(): it also splits on U+0085, U+2028 and the like inside a value.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing_columns = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
    if missing_columns:
        raise ValueError(
            f"{file_name}:1: the header lacks column(s) {', '.join(missing_columns)}; "
            f"expected {','.join(COLUMNS)}"
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
        raise ValueError(f"{where}: the row has more fields than the header's {len(COLUMNS)}")
    values: dict[str, str] = {}
    for column in COLUMNS:
        value = row.get(column)
        if not isinstance(value, str):
            # csv fills the columns of a short row with None.
            raise ValueError(f"{where}: column {column!r} is missing (the row has too few fields)")
        value = value.strip()
        if "\x00" in value:
            raise ValueError(f"{where}: column {column!r} contains a NUL character")
        if not value and column in REQUIRED_VALUES:
            raise ValueError(f"{where}: column {column!r} is empty")
        if len(value) > MAX_LENGTHS.get(column, len(value)):
            raise ValueError(
                f"{where}: column {column!r} is {len(value)} characters long, at most {MAX_LENGTHS[column]}"
            )
        values[column] = value
    if len(values["currency"]) != 3:
        raise ValueError(f"{where}: column 'currency' is {values['currency']!r}, not a 3-letter code")
    try:
        calendars.calendar_code(values["primary_exchange"])
    except UnknownExchangeError as exc:
        # Its sessions could never be named: refused here, not skipped by every run.
        raise ValueError(f"{where}: column 'primary_exchange': {exc}") from None
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
    )


def _positive_int(where: str, column: str, value: str, maximum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{where}: column {column!r} is {value!r}, not a whole number") from None
    if not 1 <= number <= maximum:
        raise ValueError(f"{where}: column {column!r} is {number}, must be 1..{maximum}")
    return number
