"""The Airflow assets the collection updates: one per listing exchange and timeframe, and their alias.

Downstream DAGs schedule on ``market_data_asset("NASDAQ", "1day")``. See docs/assets.md.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

#: Every asset name starts with this; the rest is ``<listing exchange>/<timeframe>``.
ASSET_PREFIX = "market_data"

#: The alias the summary tasks attach their events to: each event names its concrete asset, decided
#: at run time (an outlet Asset would get an event on every successful run, complete or not).
MARKET_DATA_ALIAS = AssetAlias(name=ASSET_PREFIX)


def asset_name(exchange: str, timeframe: str) -> str:
    """Return the name of the asset of ``exchange``'s bars in ``timeframe``: ``market_data/ASX/1day``.

    :raises UnknownExchangeError: no calendar is known for ``exchange``.
    :raises UnknownTimeframeError: ``timeframe`` is not one we collect.
    """
    from ibkr_market_data.calendars import calendar_code
    from ibkr_market_data.timeframes import timeframe as checked_timeframe

    listing = exchange.strip().upper()
    calendar_code(listing)
    return f"{ASSET_PREFIX}/{listing}/{checked_timeframe(timeframe).name}"


def market_data_asset(exchange: str, timeframe: str) -> Asset:
    """Return the asset of ``exchange``'s bars in ``timeframe``; its URI is its name.

    :param exchange: an IB primary (listing) exchange, e.g. ``NASDAQ``.
    :param timeframe: ``1day``, ``1hour``, ``5min`` or ``1min``.
    :raises UnknownExchangeError: no calendar is known for ``exchange``.
    :raises UnknownTimeframeError: ``timeframe`` is not one we collect.
    """
    return Asset(name=asset_name(exchange, timeframe))
