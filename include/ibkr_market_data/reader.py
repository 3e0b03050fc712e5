"""Read stored bars into pandas: ``read_bars``, ``iter_bars`` (streamed in chunks) and ``read_coverage``.

The supported way for downstream code to read the collected data; docs/reading-data.md gives the
columns, what the coverage statuses mean, and examples.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ibkr_market_data import calendars, repository, timeframes
from ibkr_market_data.errors import ReadRequestError
from ibkr_market_data.repository import Listing
from ibkr_market_data.timeframes import Timeframe

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

log = logging.getLogger(__name__)

#: Rows per chunk of ``iter_bars`` unless told: ~10 MB as a DataFrame, ~40 MB while it is fetched.
DEFAULT_CHUNK_ROWS = 100_000

#: The columns of a bars DataFrame, after its (symbol, timestamp) index.
BAR_FRAME_COLUMNS = ("session", "open", "high", "low", "close", "volume", "wap", "bar_count")

#: What the names in ``symbols`` may be given as: one name, several, or None for every symbol.
Symbols = str | Sequence[str] | None
#: A session date, or the same as ``YYYY-MM-DD``.
DateLike = dt.date | str


class CoverageStatus(StrEnum):
    """What is known about one (symbol, session) of a timeframe: ``read_coverage``'s ``status`` column."""

    #: Every bar the session's schedule holds is stored (a daily session: its bar).
    COMPLETE = "complete"
    #: Some intraday bars are stored, fewer than the schedule holds: not fully collected.
    PARTIAL = "partial"
    #: No bar, and none to expect: IB sent none, or the session is before IB's first date for the symbol.
    NO_DATA = "no_data"
    #: No bar: the latest attempt covering the session failed. Not collected.
    FAILED = "failed"
    #: No bar and no attempt recorded: not collected (yet).
    NOT_COLLECTED = "not_collected"


#: The statuses of a session whose collection is done: what is stored is all there is.
COLLECTED_STATUSES = frozenset({CoverageStatus.COMPLETE, CoverageStatus.NO_DATA})


@dataclass(frozen=True)
class ReadRequest:
    """A checked request: the listings to read, the timeframe and the session range, both ends included."""

    listings: tuple[Listing, ...]
    timeframe: Timeframe
    start: dt.date
    end: dt.date


@dataclass(frozen=True)
class ReadWindow:
    """Listings whose sessions share one time zone, and the UTC timestamps their sessions' bars span."""

    zone: str
    listings: tuple[Listing, ...]
    #: First timestamp of the first session (naive UTC, as stored), included.
    first: dt.datetime
    #: First timestamp after the last session, excluded.
    stop: dt.datetime


# -- checking a request -------------------------------------------------------------------------


def check_date(value: DateLike, name: str) -> dt.date:
    """Return ``value`` as a date; ReadRequestError naming ``name`` when it is not one.

    :param value: a ``datetime.date`` or a ``YYYY-MM-DD`` string.
    :param name: what the caller called it (``start``, ``--from``), for the message.
    :raises ReadRequestError: on a datetime, a malformed string or any other type.
    """
    if isinstance(value, dt.datetime):
        raise ReadRequestError(f"{name} is a datetime ({value}); give a session date (YYYY-MM-DD)")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ReadRequestError(f"{name} must be a date as YYYY-MM-DD, not {value!r}")


def check_range(
    start: DateLike, end: DateLike, names: tuple[str, str] = ("start", "end")
) -> tuple[dt.date, dt.date]:
    """Return the session range ``[start, end]`` as dates; ReadRequestError when malformed or reversed.

    :param start: the first session date, included.
    :param end: the last session date, included.
    :param names: what the caller calls the two bounds, for the message.
    :raises ReadRequestError: on a bound that is not a date, or ``start`` after ``end``.
    """
    first, last = check_date(start, names[0]), check_date(end, names[1])
    if first > last:
        raise ReadRequestError(
            f"{names[0]} ({first}) is after {names[1]} ({last}); give {names[0]} <= {names[1]}"
        )
    return first, last


def check_timeframe(name: str) -> Timeframe:
    """Return the timeframe called ``name``; ReadRequestError listing the known ones otherwise.

    :raises ReadRequestError: on a name that is not ``1day``, ``1hour``, ``5min`` or ``1min``.
    """
    if not isinstance(name, str):
        raise ReadRequestError(f"timeframe must be a name ({', '.join(timeframes.TIMEFRAMES)}), not {name!r}")
    try:
        return timeframes.timeframe(name)
    except timeframes.UnknownTimeframeError as exc:
        raise ReadRequestError(str(exc)) from None


def symbol_names(symbols: Symbols) -> list[str] | None:
    """Return the distinct names in ``symbols`` in their order, or None (every symbol) for None.

    :param symbols: one name, a sequence of names, or None.
    :raises ReadRequestError: on an empty sequence or a name that is not a non-empty string.
    """
    if symbols is None:
        return None
    given = [symbols] if isinstance(symbols, str) else list(symbols)
    if not given:
        raise ReadRequestError("symbols is empty; name at least one symbol, or pass None for every symbol")
    names: list[str] = []
    for name in given:
        if not isinstance(name, str) or not name.strip():
            raise ReadRequestError(f"symbols must be non-empty names, not {name!r}")
        if name.strip() not in names:
            names.append(name.strip())
    return names


def adjustment_kinds(adjusted: bool) -> tuple[str, ...] | None:
    """Return what an ``adjusted`` read accounts for (``IBKR_ADJUST_FOR``), or None for raw prices.

    See docs/corporate-actions.md#adjusted-prices.

    :raises UnknownCorporateActionKindError: ``IBKR_ADJUST_FOR`` names a kind it cannot account for.
    """
    if not adjusted:
        return None
    from ibkr_market_data.adjustments import configured_adjust_for

    return configured_adjust_for()


def resolve_request(
    conn: psycopg.Connection, symbols: Symbols, timeframe: str, start: DateLike, end: DateLike
) -> ReadRequest:
    """Check a request and find its listings.

    :param conn: an open connection to the market-data database.
    :param symbols: symbol names, or None for every symbol.
    :param timeframe: ``1day``, ``1hour``, ``5min`` or ``1min``.
    :param start: the first session date, included.
    :param end: the last session date, included.
    :raises ReadRequestError: on a bad range or timeframe, or a symbol ``symbols`` does not hold.
    """
    tf = check_timeframe(timeframe)
    first, last = check_range(start, end)
    names = symbol_names(symbols)
    found = repository.listings(conn, names)
    if names is not None:
        known = {listing.symbol for listing in found}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ReadRequestError(
                f"unknown symbols: {', '.join(unknown)}; the symbols table has no such name "
                "(add it to the universe and run load-symbols)"
            )
        order = {name: position for position, name in enumerate(names)}
        found.sort(key=lambda listing: order[listing.symbol])
    return ReadRequest(tuple(found), tf, first, last)


def local_midnight_utc(day: dt.date, zone: str) -> dt.datetime:
    """Return the start of ``day`` in ``zone`` as a naive UTC datetime (how ``market_data`` stamps bars)."""
    local = dt.datetime.combine(day, dt.time(), ZoneInfo(zone))
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def read_windows(request: ReadRequest) -> list[ReadWindow]:
    """Group the request's listings by the time zone that dates their sessions, each with its UTC span.

    A daily bar is stamped with its session's date, so daily bars share one window in ``UTC``. An
    intraday bar's session is its start's date in the exchange's zone: the span runs from the first
    session's local midnight to the midnight after the last one.

    :raises ReadRequestError: for an intraday read of a symbol whose exchange has no calendar here.
    """
    if not request.listings:
        return []
    after = request.end + dt.timedelta(days=1)
    if not request.timeframe.intraday:
        return [
            ReadWindow(
                "UTC",
                request.listings,
                dt.datetime.combine(request.start, dt.time()),
                dt.datetime.combine(after, dt.time()),
            )
        ]
    by_zone: dict[str, list[Listing]] = {}
    for listing in request.listings:
        try:
            zone = calendars.time_zone(listing.primary_exchange)
        except calendars.UnknownExchangeError as exc:
            raise ReadRequestError(
                f"{listing.symbol}: {exc}; its intraday sessions cannot be dated"
            ) from None
        by_zone.setdefault(zone, []).append(listing)
    return [
        ReadWindow(
            zone,
            tuple(listings),
            local_midnight_utc(request.start, zone),
            local_midnight_utc(after, zone),
        )
        for zone, listings in sorted(by_zone.items())
    ]


# -- bars -----------------------------------------------------------------------------------------


def bars_frame(
    rows: Sequence[tuple[object, ...]],
    names: dict[int, str],
    zone: str,
    intraday: bool,
    adjusted: bool = False,
) -> pd.DataFrame:
    """Return ``rows`` (``repository.BAR_COLUMNS`` tuples) as a bars DataFrame indexed by (symbol, timestamp).

    :param rows: rows as ``repository.bar_batches`` yields them.
    :param names: symbol name per symbol id.
    :param zone: the time zone dating the rows' sessions (ignored for daily bars).
    :param intraday: whether the rows are intraday bars (stamped with their UTC start).
    :param adjusted: adjusted rows: a bar whose session has no factor yet has NaN prices and NA volume.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    raw = pd.DataFrame(list(rows), columns=list(repository.BAR_COLUMNS))
    stamps = pd.DatetimeIndex(raw["timestamp"].to_numpy(dtype="datetime64[us]"))
    local = stamps.tz_localize("UTC").tz_convert(zone).tz_localize(None) if intraday else stamps
    sessions = pd.array(
        local.normalize().to_numpy().astype("datetime64[D]"), dtype=pd.ArrowDtype(pa.date32())
    )
    index = pd.MultiIndex.from_arrays(
        [
            pd.array(raw["symbol_id"].map(names).to_numpy(dtype=object), dtype="str"),
            stamps.tz_localize("UTC"),
        ],
        names=["symbol", "timestamp"],
    )
    return pd.DataFrame(
        {
            "session": sessions,
            "open": raw["open"].to_numpy(dtype=np.float64),
            "high": raw["high"].to_numpy(dtype=np.float64),
            "low": raw["low"].to_numpy(dtype=np.float64),
            "close": raw["close"].to_numpy(dtype=np.float64),
            "volume": raw["volume"].astype("Int64").array
            if adjusted
            else raw["volume"].to_numpy(dtype=np.int64),
            "wap": pd.to_numeric(raw["wap"], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan),
            "bar_count": raw["bar_count"].astype("Int64").array,
        },
        index=index,
    )


def iter_bars(
    symbols: Symbols,
    timeframe: str,
    start: DateLike,
    end: DateLike,
    *,
    adjusted: bool = False,
    conn: psycopg.Connection | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Generator[pd.DataFrame, None, None]:
    """Return an iterator of bars DataFrames of at most ``chunk_rows`` rows, read by a server-side cursor.

    The request is checked at once, before anything is read; the iterator holds one chunk at a
    time, whatever the range. Each chunk is indexed by (symbol, timestamp) like ``read_bars``' result,
    symbol by symbol, each symbol's bars in time order; a symbol's bars may span two chunks. Symbols
    come grouped by the time zone of their exchange (for intraday bars), then in the order of their
    ids. The iteration runs in a transaction of ``conn`` (a savepoint if one is open): iterate to the
    end or ``close()`` the generator to end it (and, without ``conn``, close the connection).

    Example::

        for chunk in iter_bars(None, "1min", "2025-01-01", "2025-12-31"):
            daily_volume = chunk.groupby(["symbol", "session"])["volume"].sum()

    :param symbols: a symbol name, several, or None for every symbol.
    :param timeframe: ``1day``, ``1hour``, ``5min`` or ``1min``.
    :param start: the first session date, included (a date or ``YYYY-MM-DD``).
    :param end: the last session date, included.
    :param adjusted: prices and volume adjusted for what ``IBKR_ADJUST_FOR`` names (splits and
        dividends by default), the same rows: docs/corporate-actions.md#adjusted-prices.
    :param conn: a psycopg 3 connection to the market-data database; default: one opened on the
        ``market_data_db`` Airflow connection, closed when the iteration ends.
    :param chunk_rows: the most rows one chunk holds.
    :raises ReadRequestError: on an unknown symbol or timeframe, a reversed or malformed range, or
        ``chunk_rows`` below 1.
    :raises UnknownCorporateActionKindError: ``adjusted=True`` and ``IBKR_ADJUST_FOR`` names a bad kind.
    """
    kinds = adjustment_kinds(adjusted)
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ReadRequestError(f"chunk_rows must be a whole number >= 1, not {chunk_rows!r}")
    check_timeframe(timeframe)
    check_range(start, end)
    connection = conn if conn is not None else open_connection()
    try:
        with connection.transaction():
            request = resolve_request(connection, symbols, timeframe, start, end)
        windows = read_windows(request)
    except BaseException:
        if conn is None:
            connection.close()
        raise
    return _chunks(connection, request, windows, chunk_rows, close=conn is None, kinds=kinds)


def _chunks(
    conn: psycopg.Connection,
    request: ReadRequest,
    windows: list[ReadWindow],
    chunk_rows: int,
    close: bool,
    kinds: tuple[str, ...] | None = None,
) -> Generator[pd.DataFrame, None, None]:
    try:
        with conn.transaction():
            for window in windows:
                names = {listing.id: listing.symbol for listing in window.listings}
                for rows in repository.bar_batches(
                    conn, list(names), request.timeframe.name, window.first, window.stop, chunk_rows, kinds
                ):
                    frame = bars_frame(
                        rows, names, window.zone, request.timeframe.intraday, kinds is not None
                    )
                    if kinds is not None:
                        _warn_unadjusted(frame)
                    yield frame
    finally:
        if close:
            conn.close()


def _warn_unadjusted(frame: pd.DataFrame) -> None:
    """Log the symbols of an adjusted chunk with bars whose session has no factor yet (NaN prices)."""
    unknown = frame["close"].isna()
    if unknown.any():
        for symbol, count in unknown[unknown].groupby(level="symbol").size().items():
            log.warning(
                "%s: %d bars have no adjustment factor yet (NaN prices, NA volume); the "
                "market_data_adjustments DAG fetches it, or trigger it with symbols=[%s]",
                symbol,
                count,
                symbol,
            )


def read_bars(
    symbols: Symbols,
    timeframe: str,
    start: DateLike,
    end: DateLike,
    *,
    adjusted: bool = False,
    conn: psycopg.Connection | None = None,
) -> pd.DataFrame:
    """Return the stored bars of ``symbols`` in ``timeframe`` for the sessions ``start`` to ``end``.

    Indexed by (symbol, timestamp), sorted, the timestamp in UTC (an intraday bar's start; a daily
    bar's session date at midnight); columns ``BAR_FRAME_COLUMNS``: ``session`` (the session's date,
    in the exchange's time zone), prices as float64, ``volume``, ``wap``, ``bar_count``. A session
    without a row has no bar stored: ``read_coverage`` tells whether IB has none or it was not
    collected. For ranges too large for one DataFrame, iterate ``iter_bars``.

    Example::

        bars = read_bars(["AAPL", "MSFT"], "5min", "2025-01-13", "2025-01-17")
        aapl_closes = bars.loc["AAPL", "close"]

    :param symbols: a symbol name, several, or None for every symbol.
    :param timeframe: ``1day``, ``1hour``, ``5min`` or ``1min``.
    :param start: the first session date, included (a date or ``YYYY-MM-DD``).
    :param end: the last session date, included.
    :param adjusted: prices and volume adjusted for what ``IBKR_ADJUST_FOR`` names (splits and
        dividends by default), the same rows: docs/corporate-actions.md#adjusted-prices.
    :param conn: a psycopg 3 connection to the market-data database; default: one opened on the
        ``market_data_db`` Airflow connection and closed before returning.
    :raises ReadRequestError: on an unknown symbol or timeframe, or a reversed or malformed range.
    :raises UnknownCorporateActionKindError: ``adjusted=True`` and ``IBKR_ADJUST_FOR`` names a bad kind.
    """
    import pandas as pd

    pieces: list[tuple[str, pd.DataFrame]] = []
    for chunk in iter_bars(symbols, timeframe, start, end, adjusted=adjusted, conn=conn):
        pieces.extend(symbol_pieces(chunk))
    if not pieces:
        return bars_frame([], {}, "UTC", intraday=False)
    # Chunks come by symbol id: putting the pieces in name order (stable, so each symbol's stay in
    # time order) sorts the frame in the one copy concat makes, where sort_index would make another.
    pieces.sort(key=lambda piece: piece[0])
    return pd.concat([piece for _, piece in pieces]) if len(pieces) > 1 else pieces[0][1]


def symbol_pieces(chunk: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Split a chunk (symbols in runs, as ``iter_bars`` yields them) into one slice per symbol, named."""
    import numpy as np

    symbols = chunk.index.get_level_values("symbol").to_numpy()
    if len(symbols) == 0:
        return []
    starts = [0, *(np.flatnonzero(symbols[1:] != symbols[:-1]) + 1).tolist()]
    ends = [*starts[1:], len(symbols)]
    return [(str(symbols[first]), chunk.iloc[first:stop]) for first, stop in zip(starts, ends, strict=True)]


# -- coverage -------------------------------------------------------------------------------------


def read_coverage(
    symbols: Symbols,
    timeframe: str,
    start: DateLike,
    end: DateLike,
    *,
    conn: psycopg.Connection | None = None,
) -> pd.DataFrame:
    """Return what is known about every session of ``symbols`` from ``start`` to ``end`` in ``timeframe``.

    One row per (symbol, session) of the symbol's exchange calendar, indexed by (symbol, session),
    sorted; columns ``exchange``, ``status`` (a ``CoverageStatus`` value), ``bars`` (stored),
    ``expected_bars`` (by the session's schedule, early closes included) and ``collected`` (True for
    ``complete`` and ``no_data``). It tells "no bar" (``no_data``: IB has none) from "not
    collected" (``failed``, ``not_collected``, ``partial``). Symbols of an exchange without a calendar
    here are left out, with a warning.

    Example::

        coverage = read_coverage("AAPL", "1day", "2025-01-01", "2025-01-31")
        to_backfill = coverage[~coverage["collected"]]

    :param symbols: a symbol name, several, or None for every symbol.
    :param timeframe: ``1day``, ``1hour``, ``5min`` or ``1min``.
    :param start: the first session date, included (a date or ``YYYY-MM-DD``).
    :param end: the last session date, included.
    :param conn: a psycopg 3 connection to the market-data database; default: one opened on the
        ``market_data_db`` Airflow connection and closed before returning.
    :raises ReadRequestError: on an unknown symbol or timeframe, or a reversed or malformed range.
    """
    check_timeframe(timeframe)
    check_range(start, end)
    connection = conn if conn is not None else open_connection()
    try:
        with connection.transaction():
            request = resolve_request(connection, symbols, timeframe, start, end)
            ids = [listing.id for listing in request.listings]
            outcomes = repository.session_outcomes(
                connection, ids, request.timeframe.name, request.start, request.end
            )
            stored = _stored_bar_counts(connection, request)
    finally:
        if conn is None:
            connection.close()
    return coverage_frame(request, stored, outcomes)


def _stored_bar_counts(conn: psycopg.Connection, request: ReadRequest) -> dict[int, dict[dt.date, int]]:
    ids = [listing.id for listing in request.listings]
    name = request.timeframe.name
    if not request.timeframe.intraday:
        found = repository.existing_bar_dates(conn, ids, name, request.start, request.end)
        return {symbol_id: dict.fromkeys(days, 1) for symbol_id, days in found.items()}
    zones = {}
    for listing in request.listings:
        try:
            zones[listing.id] = calendars.time_zone(listing.primary_exchange)
        except calendars.UnknownExchangeError:
            continue  # left out of the coverage, with the warning coverage_frame logs
    return repository.session_bar_counts(conn, zones, name, request.start, request.end)


def session_status(bars: int, expected: int, before_first_date: bool, outcome: str | None) -> CoverageStatus:
    """Return the coverage status of one session from what is stored and what was recorded.

    :param bars: bars stored for the session.
    :param expected: bars the session's schedule holds.
    :param before_first_date: whether the session is before IB's first date for the symbol.
    :param outcome: ``no_data``, ``failed`` or None, as ``repository.session_outcomes`` gives it.
    """
    if bars and bars >= expected:
        return CoverageStatus.COMPLETE
    if bars:
        return CoverageStatus.PARTIAL
    if before_first_date or outcome == CoverageStatus.NO_DATA:
        return CoverageStatus.NO_DATA
    if outcome == CoverageStatus.FAILED:
        return CoverageStatus.FAILED
    return CoverageStatus.NOT_COLLECTED


def coverage_frame(
    request: ReadRequest,
    stored: dict[int, dict[dt.date, int]],
    outcomes: dict[tuple[int, dt.date], str],
) -> pd.DataFrame:
    """Return the coverage DataFrame of ``request`` from the bars stored and the outcomes recorded."""
    import pandas as pd
    import pyarrow as pa

    from ibkr_market_data.daily_plan import scheduled_bars

    symbols, sessions, exchanges, statuses, bars, expected = [], [], [], [], [], []
    for listing in sorted(request.listings, key=lambda listing: listing.symbol):
        try:
            days = calendars.sessions_between(listing.primary_exchange, request.start, request.end)
        except calendars.UnknownExchangeError as exc:
            log.warning("Left out of the coverage: %s: %s", listing.symbol, exc)
            continue
        counts = stored.get(listing.id, {})
        first_date = listing.first_available_date
        for day in days:
            wanted = scheduled_bars(listing.primary_exchange, day, request.timeframe)
            found = counts.get(day, 0)
            symbols.append(listing.symbol)
            sessions.append(day)
            exchanges.append(listing.primary_exchange)
            statuses.append(
                session_status(
                    found,
                    wanted,
                    first_date is not None and day < first_date,
                    outcomes.get((listing.id, day)),
                ).value
            )
            bars.append(found)
            expected.append(wanted)
    index = pd.MultiIndex.from_arrays(
        [pd.array(symbols, dtype="str"), pd.array(sessions, dtype=pd.ArrowDtype(pa.date32()))],
        names=["symbol", "session"],
    )
    frame = pd.DataFrame(
        {
            "exchange": pd.array(exchanges, dtype="str"),
            "status": pd.Categorical(statuses, categories=[status.value for status in CoverageStatus]),
            "bars": pd.array(bars, dtype="int64"),
            "expected_bars": pd.array(expected, dtype="int64"),
        },
        index=index,
    )
    frame["collected"] = frame["status"].isin([status.value for status in COLLECTED_STATUSES]).astype(bool)
    return frame


def open_connection() -> psycopg.Connection:
    """Open a connection on the ``market_data_db`` Airflow connection (PostgresHook), as the tasks do."""
    from ibkr_market_data.tasks.database import open_market_connection

    return open_market_connection()
