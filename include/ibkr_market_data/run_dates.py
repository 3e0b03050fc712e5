"""Decide which trading date a run collects, and refuse a bad one before any request.

See docs/daily-dag.md.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from ibkr_market_data import calendars
from ibkr_market_data.errors import InvalidRunParamError

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date_param(value: object, name: str = "date") -> dt.date | None:
    """Return the date of a ``YYYY-MM-DD`` param ``name``; None when it is None or empty.

    :raises InvalidRunParamError: the value is not a valid date as ``YYYY-MM-DD``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if not _DATE.match(text):
        raise InvalidRunParamError(f"Param {name!r} must be a date as YYYY-MM-DD, got {value!r}")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRunParamError(
            f"Param {name!r} must be a valid calendar date, got {value!r}: {exc}"
        ) from exc


def resolve_trading_date(
    *,
    date_param: object,
    run_type: str | None,
    logical_date: dt.datetime | None,
    run_after: dt.datetime | None,
    exchanges: Sequence[str],
    delay: dt.timedelta = dt.timedelta(0),
) -> dt.date:
    """Return the trading date of a run.

    The ``date`` param comes first; a scheduled or backfill run takes its logical date (midnight UTC
    of the trading date); any other run the latest trading date completed by its logical date (or
    ``run_after``) less ``delay``, the timetable's wait after the close.

    :raises InvalidRunParamError: a malformed ``date`` param, or nothing to take a date from.
    """
    chosen = parse_date_param(date_param)
    if chosen is not None:
        return chosen
    if run_type in ("scheduled", "backfill") and logical_date is not None:
        return logical_date.astimezone(dt.UTC).date()
    as_of = logical_date or run_after
    if as_of is None:
        raise InvalidRunParamError("The run has no date param, logical date or run_after to take a date from")
    return calendars.latest_completed_trading_date(exchanges, as_of - delay)


def check_trading_date(trading_date: dt.date, exchanges: Sequence[str], now: dt.datetime) -> None:
    """Refuse a future date, or one that none of ``exchanges`` trades.

    :raises InvalidRunParamError: the date is in the future, before the calendars or not traded.
    """
    if trading_date > now.astimezone(dt.UTC).date() + dt.timedelta(days=1):
        raise InvalidRunParamError(
            f"Param 'date' is {trading_date.isoformat()}, in the future; IB has no bars yet. "
            "Give a past trading date as YYYY-MM-DD."
        )
    if trading_date < calendars.CALENDAR_START:
        raise InvalidRunParamError(
            f"Param 'date' is {trading_date.isoformat()}, before {calendars.CALENDAR_START.isoformat()}, "
            "the first date this collector's calendars cover; give a later trading date."
        )
    trading = [exchange for exchange in exchanges if calendars.is_session(exchange, trading_date)]
    if not trading:
        raise InvalidRunParamError(
            f"Param 'date' is {trading_date.isoformat()} ({trading_date:%A}), not a trading day on "
            f"{' or '.join(sorted(exchanges))}; give a trading date as YYYY-MM-DD."
        )
    if all(calendars.session_open(exchange, trading_date) > now for exchange in trading):
        raise InvalidRunParamError(
            f"Param 'date' is {trading_date.isoformat()}: its sessions have not opened yet, "
            "so IB has no bars; give a past trading date."
        )
