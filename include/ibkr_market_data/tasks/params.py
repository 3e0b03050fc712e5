"""Check and read the run params the daily and backfill DAGs share: exchanges, timeframe, symbols.

See docs/configuration.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ibkr_market_data import repository
from ibkr_market_data.errors import (
    InvalidQualitySettingError,
    InvalidRunParamError,
    UnknownTimeframeError,
)
from ibkr_market_data.settings import DAILY_EXCHANGES

if TYPE_CHECKING:
    import psycopg

    from ibkr_market_data.repository import SymbolRow
    from ibkr_market_data.timeframes import Timeframe

log = logging.getLogger(__name__)


def as_name_list(value: object) -> list[str]:
    """Return a param given as a list, or as one comma-separated string, as clean upper-case names."""
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    return [str(item).strip().upper() for item in items if str(item).strip()]


def selected_exchanges(params: Mapping[str, Any]) -> list[str]:
    """Return the ``exchanges`` param, all of ``DAILY_EXCHANGES`` when empty.

    :raises InvalidRunParamError: an exchange is unknown.
    """
    exchanges = as_name_list(params.get("exchanges")) or list(DAILY_EXCHANGES)
    unknown = sorted(set(exchanges) - set(DAILY_EXCHANGES))
    if unknown:
        raise InvalidRunParamError(
            f"Param 'exchanges' has unknown exchanges {unknown}; choose from {list(DAILY_EXCHANGES)}"
        )
    return exchanges


def selected_timeframe(params: Mapping[str, Any]) -> Timeframe | None:
    """Return the ``timeframe`` param: one timeframe for every symbol, or None for each one's configured ones.

    :raises InvalidRunParamError: an unknown timeframe, or a bad timeframe setting when the run
        collects the configured ones.
    """
    from ibkr_market_data import timeframes

    value = str(params.get("timeframe") or timeframes.CONFIGURED).strip().lower()
    if value == timeframes.CONFIGURED:
        from ibkr_market_data import derived

        try:
            timeframes.policy_from_env()
            derived.settings_from_env()
        except UnknownTimeframeError as exc:
            raise InvalidRunParamError(str(exc)) from None  # it names the variable
        return None
    try:
        return timeframes.timeframe(value)
    except UnknownTimeframeError as exc:
        raise InvalidRunParamError(f"Param 'timeframe': {exc}") from None


def timeframes_of(rows: Sequence[SymbolRow], selected: Timeframe | None) -> dict[Timeframe, list[SymbolRow]]:
    """Return the symbols to collect per timeframe: all in ``selected``, or each in its configured ones."""
    from ibkr_market_data import timeframes

    if selected is not None:
        return {selected: list(rows)} if rows else {}
    policy = timeframes.policy_from_env()
    by_timeframe: dict[Timeframe, list[SymbolRow]] = {}
    for row in rows:
        for tf in policy.for_priority(row.priority):
            by_timeframe.setdefault(tf, []).append(row)
    return by_timeframe


def select_wanted_symbols(
    conn: psycopg.Connection, symbols: Sequence[str], exchanges: Sequence[str], priority: str = "all"
) -> list[SymbolRow]:
    """Return the active symbols the params select.

    A named symbol that is inactive or filtered out by ``exchanges`` / ``priority`` is logged, not refused.

    :raises InvalidRunParamError: ``symbols`` names one never loaded.
    """
    if symbols:
        unknown = sorted(set(symbols) - repository.known_symbol_names(conn))
        if unknown:
            raise InvalidRunParamError(
                f"Param 'symbols' names unknown symbols: {', '.join(unknown)}; "
                "add them to the universe and run load-symbols first"
            )
    rows = repository.select_symbols(conn, symbols=symbols, exchanges=exchanges, priority=priority)
    left_out = sorted(set(symbols) - {row.symbol for row in rows})
    if left_out:
        log.warning("Left out (inactive, or not on %s): %s", ", ".join(exchanges), ", ".join(left_out))
    return rows


def check_quality_settings() -> None:
    """Refuse a bad ``IBKR_QUALITY_SEVERITIES`` or no-data alert setting before any request.

    :raises InvalidRunParamError: naming the bad entry.
    """
    from ibkr_market_data import no_data_alerts, quality

    try:
        quality.rules_from_env()
        no_data_alerts.rule_from_env()
    except InvalidQualitySettingError as exc:
        raise InvalidRunParamError(str(exc)) from None
