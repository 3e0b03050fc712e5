"""The charts tests' scenario: AAPL's bars as the simulator makes them, and what the chart marks.

Daily bars of AAPL and MSFT from 2025-01-02 to SESSION; AAPL's 5-minute and 1-minute bars of
SESSION and the session before; on SESSION a data-quality finding, a revised 5-minute bar (written
by a run, as a backfill revises one) and a split.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from ibkr_market_data import calendars, repository
from ibkr_market_data.repository import RunContext
from ibkr_market_data_dev.simulated_ib import shipped_listings, stored_bar
from tests.integration.operations.conftest import insert_symbols
from tws_simulator.market import MarketModel

FIRST = dt.date(2025, 1, 2)
SESSION = dt.date(2025, 3, 14)
BEFORE = dt.date(2025, 3, 13)
#: The 5-minute bar the backfill revised: 10:00 New York time on SESSION.
REVISED_AT = dt.datetime(2025, 3, 14, 14, 0)
REVISION_RUN = RunContext("backfill_market_data", "manual__2025-03-20")


def store(conn: Any) -> dict[str, Any]:
    """Write the scenario; return the symbol ids and the bars written per (symbol, timeframe)."""
    ids = insert_symbols(conn)
    model = MarketModel(shipped_listings())
    written: dict[tuple[str, str], int] = {}
    for symbol in ("AAPL", "MSFT"):
        daily = [stored_bar(bar) for bar in model.daily_bars(symbol, FIRST, SESSION)]
        repository.upsert_bars(conn, ids[symbol], "1day", daily)
        written[(symbol, "1day")] = len(daily)
    for timeframe, seconds in (("5min", 300), ("1min", 60)):
        bars = [
            stored_bar(bar)
            for day in (BEFORE, SESSION)
            for bar in model.intraday_bars("AAPL", day, seconds, use_rth=True)
        ]
        repository.upsert_bars(conn, ids["AAPL"], timeframe, bars)
        written[("AAPL", timeframe)] = len(bars)
    [revised] = [
        stored_bar(bar)
        for bar in model.intraday_bars("AAPL", SESSION, 300, use_rth=True)
        if stored_bar(bar).timestamp == REVISED_AT
    ]
    changed = dataclasses.replace(revised, volume=revised.volume + 1_000)
    repository.upsert_bars(conn, ids["AAPL"], "5min", [changed], run=REVISION_RUN)
    conn.execute(
        """
        INSERT INTO data_quality_issues (symbol_id, timeframe, timestamp, check_name, severity, detail,
                                         dag_id, run_id, last_run_id)
        VALUES (%s, '1day', %s, 'volume_spike', 'warning', 'volume 9.1x the median of 20 sessions',
                'daily_market_data', 'scheduled__2025-03-14', 'scheduled__2025-03-14')
        """,
        (ids["AAPL"], dt.datetime.combine(SESSION, dt.time())),
    )
    conn.execute(
        """
        INSERT INTO corporate_actions (symbol_id, kind, effective_session, ratio, detected_by)
        VALUES (%s, 'split', %s, 4, 'test scenario')
        """,
        (ids["AAPL"], SESSION),
    )
    conn.commit()
    assert calendars.is_session("NASDAQ", SESSION) and calendars.is_session("NASDAQ", BEFORE)
    return {"ids": ids, "written": written}
