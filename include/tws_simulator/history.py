"""What a historical-data request means, and the bars that answer it.

How ``endDateTime``, ``durationStr``, the bar size and ``whatToShow`` are read, and IB's step
sizes: docs/simulator.md#historical-requests.
"""

from __future__ import annotations

import calendar as month_calendar
import dataclasses
import datetime as dt
import re
from collections.abc import Collection
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tws_simulator import ib_errors
from tws_simulator.ib_errors import IbError
from tws_simulator.market import MarketModel, SimBar, SimContract, random_stream
from tws_simulator.served import ServedMarket

DAILY_BAR_SIZE = "1 day"

#: IB's intraday bar sizes (up to one hour), in seconds.
INTRADAY_BAR_SECONDS: dict[str, int] = {
    "1 secs": 1,
    "5 secs": 5,
    "10 secs": 10,
    "15 secs": 15,
    "30 secs": 30,
    "1 min": 60,
    "2 mins": 120,
    "3 mins": 180,
    "5 mins": 300,
    "10 mins": 600,
    "15 mins": 900,
    "20 mins": 1200,
    "30 mins": 1800,
    "1 hour": 3600,
}

#: Spellings clients use besides IB's own.
_BAR_SIZE_ALIASES: dict[str, int] = {"1 sec": 1, "1 mins": 60, "1 hours": 3600}

#: IB's "Step Sizes" table: each duration, with the smallest and the largest bar size it allows.
#: Source: TWS API documentation, Historical Bar Data, "Historical Data Limitations", "Step Sizes"
#: (https://interactivebrokers.github.io/tws-api/historical_limitations.html#hd_step_sizes).
#: An intraday bar size may be asked for over at most the longest duration whose row allows it
#: (:data:`LONGEST_INTRADAY_DURATIONS`); longer is 162 "Time length exceed max.".
STEP_SIZES: tuple[tuple[str, str, str], ...] = (
    ("60 S", "1 secs", "1 min"),
    ("120 S", "1 secs", "2 mins"),
    ("1800 S", "1 secs", "30 mins"),
    ("3600 S", "5 secs", "1 hour"),
    ("14400 S", "10 secs", "3 hours"),
    ("28800 S", "30 secs", "8 hours"),
    ("1 D", "1 min", "1 day"),
    ("2 D", "2 mins", "1 day"),
    ("1 W", "3 mins", "1 week"),
    ("1 M", "30 mins", "1 month"),
    ("1 Y", "1 day", "1 month"),
)

_DAY_SECONDS = 86_400
#: The longest span of each ``durationStr`` unit: a month of 31 days, a year of 366.
_DURATION_UNIT_SECONDS = {
    "S": 1,
    "D": _DAY_SECONDS,
    "W": 7 * _DAY_SECONDS,
    "M": 31 * _DAY_SECONDS,
    "Y": 366 * _DAY_SECONDS,
}
_BAR_UNIT_SECONDS = {
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": _DAY_SECONDS,
    "week": 7 * _DAY_SECONDS,
    "month": 31 * _DAY_SECONDS,
}

TRADE_TYPES = frozenset({"TRADES", "ADJUSTED_LAST"})
QUOTE_TYPES = frozenset({"MIDPOINT", "BID", "ASK", "BID_ASK"})

_DURATION = re.compile(r"^(\d+) ([SDWMY])$")
_END_WITH_ZONE = re.compile(r"^(\d{8}) (\d{2}:\d{2}:\d{2}) (\S+)$")
_END_UTC_DASH = re.compile(r"^(\d{8})-(\d{2}:\d{2}:\d{2})$")
_END_NO_ZONE = re.compile(r"^(\d{8}) {1,2}(\d{2}:\d{2}:\d{2})$")
_END_DATE_ONLY = re.compile(r"^(\d{8})$")


class InvalidRequest(ValueError):
    """The request fails IB's validation; ``error`` is what to send (321 as a rule)."""

    def __init__(self, error: IbError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class HistoryQuery:
    """A validated historical request: its window in aware UTC datetimes and its bar size."""

    start: dt.datetime
    end: dt.datetime
    bar_seconds: int | None  # None for daily bars
    use_rth: bool
    what_to_show: str
    format_date: int

    @property
    def is_daily(self) -> bool:
        """Return whether the query asks for daily bars."""
        return self.bar_seconds is None


@dataclass(frozen=True)
class HistoryAnswer:
    """Bars ready for the wire: each bar as its eight string fields."""

    start_text: str
    end_text: str
    bars: list[tuple[str, ...]]


def _duration_seconds(duration: str) -> int:
    """Return the longest span, in seconds, of a well-formed ``durationStr`` (``1 M`` is 31 days)."""
    count, unit = duration.split()
    return int(count) * _DURATION_UNIT_SECONDS[unit]


def _longest_intraday_durations() -> dict[int, str]:
    longest: dict[int, str] = {}
    for duration, smallest, largest in STEP_SIZES:
        low, high = (
            int(count) * _BAR_UNIT_SECONDS[unit] for count, unit in (smallest.split(), largest.split())
        )
        for seconds in INTRADAY_BAR_SECONDS.values():
            known = longest.get(seconds)
            if low <= seconds <= high and (
                known is None or _duration_seconds(duration) > _duration_seconds(known)
            ):
                longest[seconds] = duration
    return longest


#: The longest ``durationStr`` IB allows per intraday bar size (in seconds), read from :data:`STEP_SIZES`:
#: ``1800 S`` for 1 second, ``1 D`` for 1 minute, ``1 W`` for 5 minutes, ``1 M`` for 1 hour, ...
LONGEST_INTRADAY_DURATIONS: dict[int, str] = _longest_intraday_durations()


def check_duration(query: HistoryQuery) -> None:
    """Refuse ``query`` if it spans longer than IB allows for its bar size.

    Daily bars may span any duration.

    :raises InvalidRequest: 162 "Time length exceed max.".
    """
    if query.bar_seconds is None:
        return
    allowed = _duration_seconds(LONGEST_INTRADAY_DURATIONS[query.bar_seconds])
    if (query.end - query.start).total_seconds() > allowed:
        raise InvalidRequest(ib_errors.time_length_exceeded())


def bar_size_seconds(bar_size: str) -> int | None:
    """Return the seconds of an intraday bar size, None for ``1 day``.

    :raises InvalidRequest: for a bar size IB does not know.
    """
    if bar_size == DAILY_BAR_SIZE:
        return None
    seconds = INTRADAY_BAR_SECONDS.get(bar_size, _BAR_SIZE_ALIASES.get(bar_size))
    if seconds is None:
        raise InvalidRequest(ib_errors.validation_failed(f"Invalid bar size: {bar_size!r}"))
    return seconds


def _zone(name: str) -> dt.tzinfo:
    if name.upper() in ("UTC", "GMT"):
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(ib_errors.validation_failed(f"Invalid time zone: {name}")) from None


def parse_end_date_time(text: str, now: dt.datetime, login_time_zone: str = "UTC") -> dt.datetime:
    """Return the aware UTC instant a request's ``endDateTime`` names (``''`` is ``now``).

    :raises InvalidRequest: 321 for a form IB does not accept.
    """
    if not text:
        return now.astimezone(dt.UTC)
    try:
        if match := _END_WITH_ZONE.match(text):
            day, clock, zone = match.groups()
            local = dt.datetime.strptime(day + clock, "%Y%m%d%H:%M:%S").replace(tzinfo=_zone(zone))
        elif match := _END_UTC_DASH.match(text):
            day, clock = match.groups()
            local = dt.datetime.strptime(day + clock, "%Y%m%d%H:%M:%S").replace(tzinfo=dt.UTC)
        elif match := _END_NO_ZONE.match(text):
            day, clock = match.groups()
            local = dt.datetime.strptime(day + clock, "%Y%m%d%H:%M:%S").replace(tzinfo=_zone(login_time_zone))
        elif match := _END_DATE_ONLY.match(text):
            local = dt.datetime.strptime(match.group(1) + "23:59:59", "%Y%m%d%H:%M:%S").replace(
                tzinfo=_zone(login_time_zone)
            )
        else:
            raise ValueError(text)
    except ValueError:
        raise InvalidRequest(
            ib_errors.validation_failed(f"Invalid end date/time: {text!r}, expected 'yyyyMMdd HH:mm:ss zone'")
        ) from None
    return local.astimezone(dt.UTC)


def _months_before(moment: dt.datetime, months: int) -> dt.datetime:
    total = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(total, 12)
    day = min(moment.day, month_calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def window_start(end: dt.datetime, duration: str) -> dt.datetime:
    """Return the start of a ``durationStr`` window ending at ``end``.

    :raises InvalidRequest: 321 for a malformed duration, or one IB wants in larger units.
    """
    match = _DURATION.match(duration)
    if not match:
        raise InvalidRequest(
            ib_errors.validation_failed(f"Invalid duration string: {duration!r}, expected 'N S|D|W|M|Y'")
        )
    count, unit = int(match.group(1)), match.group(2)
    if count <= 0:
        raise InvalidRequest(ib_errors.validation_failed(f"Invalid duration string: {duration!r}"))
    if unit == "S":
        if count > 86_400:
            raise InvalidRequest(
                ib_errors.validation_failed(
                    "Historical data requests for durations longer than 86400 seconds must be made in days."
                )
            )
        return end - dt.timedelta(seconds=count)
    if unit == "D":
        if count > 365:
            raise InvalidRequest(
                ib_errors.validation_failed(
                    "Historical data requests for durations longer than 365 days must be made in years."
                )
            )
        return end - dt.timedelta(days=count)
    if unit == "W":
        return end - dt.timedelta(weeks=count)
    if unit == "M":
        return _months_before(end, count)
    return _months_before(end, 12 * count)


def build_query(
    *,
    end_date_time: str,
    duration: str,
    bar_size: str,
    use_rth: bool,
    what_to_show: str,
    format_date: int,
    now: dt.datetime,
    login_time_zone: str = "UTC",
) -> HistoryQuery:
    """Validate a request's parameters as IB does, and return them as a query.

    :raises InvalidRequest: carrying the error IB would send.
    """
    if what_to_show not in TRADE_TYPES | QUOTE_TYPES:
        raise InvalidRequest(ib_errors.validation_failed(f"Invalid what to show: {what_to_show}"))
    if what_to_show == "ADJUSTED_LAST" and end_date_time:
        raise InvalidRequest(
            ib_errors.validation_failed("End date not supported with adjusted last")  # IB's own wording
        )
    bar_seconds = bar_size_seconds(bar_size)
    end = parse_end_date_time(end_date_time, now, login_time_zone)
    return HistoryQuery(
        start=window_start(end, duration),
        end=end,
        bar_seconds=bar_seconds,
        use_rth=use_rth,
        what_to_show=what_to_show,
        format_date=format_date,
    )


def _bar_fields(bar: SimBar, date_text: str, trades: bool) -> tuple[str, ...]:
    if trades:
        return (
            date_text,
            f"{bar.open:f}",
            f"{bar.high:f}",
            f"{bar.low:f}",
            f"{bar.close:f}",
            str(bar.volume),
            f"{bar.wap:f}",
            str(bar.bar_count),
        )
    return (date_text, f"{bar.open:f}", f"{bar.high:f}", f"{bar.low:f}", f"{bar.close:f}", "-1", "-1", "-1")


def select_bars(
    served: ServedMarket, contract: SimContract, query: HistoryQuery, now: dt.datetime, max_bars: int
) -> list[SimBar]:
    """Return the bars IB serves as of ``now`` that answer ``query``, oldest first (possibly none).

    :raises InvalidRequest: 162 when the window is longer than IB allows for the bar size.
    """
    model = served.model
    view = served.view(contract, now)
    index = model.session_index(contract)
    until = min(query.end, now).timestamp()
    start = query.start.timestamp()
    # ADJUSTED_LAST: the TRADES bars, adjusted for dividends as well (served.py).
    adjusted = query.what_to_show == "ADJUSTED_LAST"
    if query.bar_seconds is None:
        lo, hi = index.closing_within(start, until)
        daily_bar = view.adjusted_daily_bar if adjusted else view.daily_bar
        daily = [daily_bar(day) for day in index.dates[lo:hi] if day >= contract.listing_date]
        return [bar for bar in daily if bar is not None]
    check_duration(query)
    if (until - start) / query.bar_seconds > max_bars:
        raise InvalidRequest(ib_errors.time_length_exceeded())
    # Extended hours reach at most 5.5 h before the open and 4 h after the close.
    lo, hi = index.overlapping(start - 6 * 3600, until + 6 * 3600)
    selected: list[SimBar] = []
    for day in index.dates[lo:hi]:
        if day < contract.listing_date:
            continue
        intraday_bars = view.adjusted_intraday_bars if adjusted else view.intraday_bars
        bars = intraday_bars(day, query.bar_seconds, query.use_rth)
        _, hours_end = model.trading_hours(contract, day, query.use_rth)
        for position, bar in enumerate(bars):
            bar_start = bar.date.timestamp()  # type: ignore[union-attr]
            following = bars[position + 1] if position + 1 < len(bars) else None
            bar_next = following.date.timestamp() if following else hours_end  # type: ignore[union-attr]
            # A bar before a gap (a halt, a quiet minute) ends with its period, not at the next bar.
            bar_end = min(bar_next, bar_start + query.bar_seconds)
            if bar_start >= start and bar_end <= until:
                selected.append(bar)
    return selected


def format_answer(
    contract: SimContract,
    query: HistoryQuery,
    bars: list[SimBar],
    corrupt: bool = False,
    corrupt_first: bool = False,
    defects: Collection[str] = (),
    naive_time_zone: str | None = None,
) -> HistoryAnswer:
    """Return the wire fields of ``bars``.

    ``corrupt`` swaps high and low and negates volume (a fault), of every bar, or of the first one
    only with ``corrupt_first``. ``defects`` (``DATA_DEFECTS``) are valid bars with wrong data, as
    the quality checks look for. ``naive_time_zone`` dates intraday bars as older TWS did
    (``yyyyMMdd  HH:mm:ss`` in that zone, without its name).
    """
    bars = with_defects(bars, defects)
    trades = query.what_to_show in TRADE_TYPES
    zone = ZoneInfo(contract.time_zone_id) if query.bar_seconds is not None else None
    naive_zone = _zone(naive_time_zone) if naive_time_zone else None
    rows: list[tuple[str, ...]] = []
    for bar in bars:
        if zone is None:
            date_text = bar.date.strftime("%Y%m%d")
        elif query.format_date == 2:
            date_text = str(int(bar.date.timestamp()))  # type: ignore[union-attr]
        elif naive_zone is not None:
            date_text = f"{bar.date.astimezone(naive_zone):%Y%m%d  %H:%M:%S}"  # type: ignore[union-attr]
        else:
            date_text = f"{bar.date.astimezone(zone):%Y%m%d %H:%M:%S} {contract.time_zone_id}"  # type: ignore[union-attr]
        if corrupt or (corrupt_first and not rows):
            bar = corrupted(bar, contract)
        rows.append(_bar_fields(bar, date_text, trades))
    return HistoryAnswer(
        start_text=f"{query.start:%Y%m%d %H:%M:%S} UTC",
        end_text=f"{query.end:%Y%m%d %H:%M:%S} UTC",
        bars=rows,
    )


#: Faults that keep every bar valid but make the data wrong (``with_defects``).
DATA_DEFECTS = ("spike", "stale_price", "volume_units")
SPIKE_FACTOR = 3
VOLUME_UNITS_FACTOR = 100


def with_defects(bars: list[SimBar], defects: Collection[str]) -> list[SimBar]:
    """Return ``bars`` with the data defects applied, each still a valid bar.

    ``spike``: the newest bar closes at ``SPIKE_FACTOR`` times its close (its high raised to match).
    ``volume_units``: the newest bar's volume is ``VOLUME_UNITS_FACTOR`` times too large (shares
    counted as lots of 100 the other way round). ``stale_price``: every bar after the oldest repeats
    the oldest's close, open, high and low with no volume, as a feed stuck on one print does.
    """
    if not bars or not defects:
        return bars
    bars = list(bars)
    if "stale_price" in defects:
        first = bars[0]
        bars[1:] = [
            dataclasses.replace(
                bar,
                open=first.close,
                high=first.close,
                low=first.close,
                close=first.close,
                wap=first.close,
                volume=0,
                bar_count=0,
            )
            for bar in bars[1:]
        ]
    newest = bars[-1]
    if "spike" in defects:
        close = newest.close * SPIKE_FACTOR
        newest = dataclasses.replace(newest, close=close, high=max(newest.high, close))
    if "volume_units" in defects:
        newest = dataclasses.replace(newest, volume=newest.volume * VOLUME_UNITS_FACTOR)
    bars[-1] = newest
    return bars


#: The ``intraday_mismatch`` fault: regular-hours volumes divided by this, and one bar a session
#: reaching this factor times the daily high.
INTRADAY_MISMATCH_VOLUME_DIVISOR = 2
INTRADAY_MISMATCH_HIGH_FACTOR = Decimal("1.05")
#: The fault changes bars of this size and longer only (the 1-minute path's aggregates).
INTRADAY_MISMATCH_MIN_BAR_SECONDS = 60


def with_intraday_mismatch(model: MarketModel, contract: SimContract, bars: list[SimBar]) -> list[SimBar]:
    """Return intraday ``bars`` made to disagree with their daily bars, each still a valid bar.

    Every bar starting in regular hours carries half its volume, and in each session the
    regular-hours bar with the highest high reaches 5% above that session's daily high (rounded
    up to a tick). Pre- and post-market bars keep their values; daily bars are never touched.
    """
    index = model.session_index(contract)
    changed = list(bars)
    highest: dict[int, int] = {}  # session position -> position in ``bars`` of its highest bar
    for at, bar in enumerate(bars):
        session = index.containing(bar.date.timestamp())  # type: ignore[union-attr]
        if session is None:
            continue
        volume = bar.volume // INTRADAY_MISMATCH_VOLUME_DIVISOR
        changed[at] = dataclasses.replace(bar, volume=volume, bar_count=min(bar.bar_count, volume))
        best = highest.get(session)
        if best is None or bar.high > bars[best].high:
            highest[session] = at
    for session, at in highest.items():
        daily = model.daily_bar(contract.symbol, index.dates[session])
        high = (daily.high * INTRADAY_MISMATCH_HIGH_FACTOR).quantize(
            contract.min_tick, rounding=ROUND_CEILING
        )
        changed[at] = dataclasses.replace(changed[at], high=high)
    return changed


#: The ``coarse_bars_disagree`` fault: bars of this size and longer, each missing a share of its volume.
COARSE_BARS_MIN_BAR_SECONDS = 300
COARSE_BARS_VOLUME_SHARE_LOST = 100  # one share in this many, at least one share a bar


def with_coarse_bars_disagreeing(bars: list[SimBar]) -> list[SimBar]:
    """Return ``bars`` each with 1% less volume (at least 1): no longer the aggregate of their minutes.

    IB's bigger bars need not add up to its 1-minute bars (it filters some trades differently).
    """
    return [
        dataclasses.replace(
            bar, volume=max(0, bar.volume - max(1, bar.volume // COARSE_BARS_VOLUME_SHARE_LOST))
        )
        for bar in bars
    ]


def corrupted(bar: SimBar, contract: SimContract) -> SimBar:
    """Return ``bar`` broken the way bad data is: high below low and a negative volume."""
    high, low = bar.low, bar.high
    if high == low:
        high = low - contract.min_tick
    return SimBar(
        date=bar.date,
        open=bar.open,
        high=high,
        low=low,
        close=bar.close,
        volume=-max(1, bar.volume),
        wap=bar.wap,
        bar_count=bar.bar_count,
    )


def head_timestamp_text(model: MarketModel, contract: SimContract, format_date: int) -> str:
    """Return the first bar's time as IB reports it: ``yyyyMMdd-HH:mm:ss`` (UTC) or epoch seconds."""
    index = model.session_index(contract)
    position = index.position(contract.listing_date)
    assert position is not None  # listing dates are sessions by construction
    opened = dt.datetime.fromtimestamp(index.opens[position], dt.UTC)
    if format_date == 2:
        return str(int(opened.timestamp()))
    return opened.strftime("%Y%m%d-%H:%M:%S")


# -- wire-level mess: valid bars, delivered the way IB sometimes delivers them -----------------------


def out_of_order(rows: list[tuple[str, ...]], key: str) -> list[tuple[str, ...]]:
    """Return ``rows`` shuffled by a stream seeded with ``key``, never in their own order (2 rows or more)."""
    if len(rows) < 2:
        return rows
    shuffled = list(rows)
    random_stream(key).shuffle(shuffled)
    if shuffled == rows:
        shuffled[0], shuffled[1] = shuffled[1], shuffled[0]
    return shuffled


def with_duplicate(rows: list[tuple[str, ...]], key: str) -> list[tuple[str, ...]]:
    """Return ``rows`` with one of them (chosen by a stream seeded with ``key``) sent twice in a row."""
    if not rows:
        return rows
    at = random_stream(key).randrange(len(rows))
    return [*rows[: at + 1], rows[at], *rows[at + 1 :]]


def update_fields(row: tuple[str, ...]) -> list[str]:
    """Return one bar's fields as a historicalDataUpdate (message 90) carries them, after the reqId.

    Its order differs from message 17's: barCount, date, open, close, high, low, WAP, volume.
    """
    date_text, open_, high, low, close, volume, wap, bar_count = row
    return [bar_count, date_text, open_, close, high, low, wap, volume]
