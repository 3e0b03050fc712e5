"""The shipped symbol universe: ASX 200, NASDAQ-100 and major ETFs, one CSV file per list.

Columns of every file (header row required):

``symbol``            IB symbol (``BHP``, ``AAPL``, ``BRK A``)
``sec_type``          IB security type, ``STK`` for shares and ETFs
``exchange``          routing exchange sent with requests (``ASX`` for ASX listings, ``SMART`` for US)
``primary_exchange``  listing exchange (``ASX``, ``NASDAQ``, ``NYSE``, ``ARCA``); picks the calendar
``currency``          ``AUD`` or ``USD``
``con_id``            IB contract id. The collector re-resolves contracts through IB and stores
                      what IB answers; the simulator serves these ids as its own.
``priority``          ``1`` collects first / with ``priority=high``; larger numbers are lower priority
``asset_class``       ``equity`` or ``etf``
``name``              company or fund name
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

UNIVERSE_FILES = ("asx200.csv", "nasdaq100.csv", "etfs.csv")


@dataclass(frozen=True)
class UniverseSymbol:
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
    """All symbols of the shipped lists, in file order; a symbol listed twice keeps its first row."""
    seen: dict[tuple[str, str], UniverseSymbol] = {}
    for file_name in files:
        text = resources.files(__package__).joinpath(file_name).read_text(encoding="utf-8")
        for line_no, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            try:
                entry = UniverseSymbol(
                    symbol=row["symbol"].strip(),
                    sec_type=row["sec_type"].strip(),
                    exchange=row["exchange"].strip(),
                    primary_exchange=row["primary_exchange"].strip(),
                    currency=row["currency"].strip(),
                    con_id=int(row["con_id"]),
                    priority=int(row["priority"]),
                    asset_class=row["asset_class"].strip(),
                    name=row["name"].strip(),
                    source_list=file_name.removesuffix(".csv"),
                )
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{file_name}:{line_no}: malformed universe row {row!r}: {exc}") from exc
            seen.setdefault((entry.symbol, entry.primary_exchange), entry)
    return list(seen.values())
