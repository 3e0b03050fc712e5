"""The instruments a simulator serves, read from CSV files or given as a list.

The simulator ships no symbol list of its own. The columns a file needs: docs/simulator.md#universe.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REQUIRED_COLUMNS = ("symbol", "sec_type", "exchange", "primary_exchange", "currency", "con_id")


class UniverseFileError(ValueError):
    """A universe file is missing, or a row of it cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Listing:
    """One instrument of the simulated market."""

    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    con_id: int
    name: str = ""
    asset_class: str = "equity"


def read_listings(paths: Iterable[Path | str]) -> tuple[Listing, ...]:
    """Return every row of ``paths``, in file order; a (symbol, primary exchange) twice keeps its first.

    :raises UniverseFileError: naming the file (and line) that is missing or cannot be read.
    """
    seen: dict[tuple[str, str], Listing] = {}
    for path in map(Path, paths):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UniverseFileError(f"universe file {path}: {exc.strerror or exc}") from exc
        reader = csv.DictReader(text.splitlines())
        missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise UniverseFileError(f"universe file {path}: no column {', '.join(missing)}")
        for line_no, row in enumerate(reader, start=2):
            try:
                listing = Listing(
                    symbol=_text(row, "symbol"),
                    sec_type=_text(row, "sec_type"),
                    exchange=_text(row, "exchange"),
                    primary_exchange=_text(row, "primary_exchange").upper(),
                    currency=_text(row, "currency"),
                    con_id=int(_text(row, "con_id")),
                    name=(row.get("name") or "").strip(),
                    asset_class=(row.get("asset_class") or "equity").strip(),
                )
            except ValueError as exc:
                raise UniverseFileError(f"{path}:{line_no}: {exc}") from None
            seen.setdefault((listing.symbol, listing.primary_exchange), listing)
    return tuple(seen.values())


def _text(row: dict[str, str | None], column: str) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise ValueError(f"column {column!r} is empty")
    return value


#: Contract ids of synthetic listings start here, far above the real ones a universe file carries.
SYNTHETIC_CON_ID_BASE = 900_000_000
#: Synthetic listings cycle through these venues: two US listings for every ASX one.
_SYNTHETIC_VENUES = (
    ("ZZ", "NASDAQ", "SMART", "USD"),
    ("ZY", "NYSE", "SMART", "USD"),
    ("ZX", "ASX", "ASX", "AUD"),
)
#: Enough for any scale test, and every name stays five letters.
MAX_SYNTHETIC_LISTINGS = 3 * 26**3


def synthetic_listings(count: int) -> tuple[Listing, ...]:
    """Return ``count`` made-up listings for scale tests, the same ones every time.

    Two of every three are US listings (NASDAQ, NYSE), one is on the ASX. Symbols are five letters
    starting ``ZZ`` (NASDAQ), ``ZY`` (NYSE) or ``ZX`` (ASX), which no real listing of the shipped
    universes uses; contract ids count up from :data:`SYNTHETIC_CON_ID_BASE`.
    """
    if not 0 <= count <= MAX_SYNTHETIC_LISTINGS:
        raise ValueError(f"synthetic listings: {count} is not a count from 0 to {MAX_SYNTHETIC_LISTINGS}")
    listings = []
    for number in range(count):
        prefix, primary_exchange, exchange, currency = _SYNTHETIC_VENUES[number % len(_SYNTHETIC_VENUES)]
        serial = number // len(_SYNTHETIC_VENUES)
        letters = "".join(chr(ord("A") + serial // 26**power % 26) for power in (2, 1, 0))
        listings.append(
            Listing(
                symbol=prefix + letters,
                sec_type="STK",
                exchange=exchange,
                primary_exchange=primary_exchange,
                currency=currency,
                con_id=SYNTHETIC_CON_ID_BASE + number,
                name=f"Synthetic listing {number + 1}",
            )
        )
    return tuple(listings)
