"""Daily runs task by task (plan, collect with retries, summary) against a simulator on a moving clock.

The tests of IB's bad days compare what a run stored with what the simulator serves (``served``),
never with the collector's own records.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, field

import psycopg
import pytest

from ibkr_market_data.errors import CollectionError, PermanentError
from ibkr_market_data.hooks.ibkr import IbkrHook
from ibkr_market_data.repository import RunContext
from ibkr_market_data.symbols import load_symbols
from ibkr_market_data.tasks import daily
from ibkr_market_data.universe import load_universe
from ibkr_market_data_dev.simulated_ib import stored_bar
from tws_simulator.testing import SettableClock, SimulatorThread

DAG_ID = "daily_market_data"
#: Two NASDAQ names, an ASX one and an ARCA one.
SYMBOLS = ("AAPL", "MSFT", "BHP", "SPY")
_run_numbers = itertools.count(1)


@dataclass
class Market:
    """A simulator whose market clock a test moves, the database, and the connection's extras."""

    simulator: SimulatorThread
    clock: SettableClock
    db: str
    runs: list[RunResult] = field(default_factory=list)

    def at(self, moment: dt.datetime) -> Market:
        """Move the market's clock to ``moment`` (aware): the day IB answers "as of"."""
        self.clock.set(moment)
        return self

    def served_daily(self, symbol: str, first: dt.date, last: dt.date) -> dict[dt.date, tuple]:
        """Return the daily bars IB serves now for ``first``..``last``, as the collector stores them."""
        bars = self.simulator.served.daily_bars(symbol, first, last, self.clock())
        return {bar.date: astuple(stored_bar(bar))[1:] for bar in bars}

    def served_intraday(self, symbol: str, session: dt.date, bar_seconds: int = 60) -> list[tuple]:
        """Return the intraday bars IB serves now for ``session``, as the collector stores them."""
        bars = self.simulator.served.intraday_bars(symbol, session, bar_seconds, True, self.clock())
        return [astuple(stored_bar(bar)) for bar in bars]

    def historical_requests(self, symbol: str | None = None) -> int:
        """Return how many historical requests the simulator received (for ``symbol``)."""
        filters = {} if symbol is None else {"symbol": symbol}
        return len(self.simulator.request_log.historical(**filters))


@dataclass
class RunResult:
    """What one run did: its id, the requests it sent and the summary's failure, if any."""

    run_id: str
    requests: int
    problems: str = ""


def start_market(
    factory: Callable[..., SimulatorThread],
    monkeypatch: pytest.MonkeyPatch,
    market_db: str,
    moment: dt.datetime,
    faults: dict | None = None,
    extras: str = "connect_timeout=5&request_timeout=10",
    symbols: Sequence[str] = SYMBOLS,
    **config: object,
) -> Market:
    """Start a simulator at ``moment`` with ``faults``, point ``ibkr_default`` at it and load ``symbols``."""
    clock = SettableClock(moment)
    simulator = factory(clock=clock, faults=faults or {}, **config)
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_DEFAULT",
        f"ibkr://{simulator.host}:{simulator.port}?client_id=10&client_id_range=32&{extras}",
    )
    universe = [entry for entry in load_universe() if entry.symbol in symbols]
    with psycopg.connect(market_db) as conn, IbkrHook() as hook:
        report = load_symbols(conn, hook, universe)
    assert sorted(report.resolved) == sorted(symbols)
    simulator.request_log.clear()
    return Market(simulator, clock, market_db)


def daily_run(
    market: Market,
    day: dt.date,
    symbols: Sequence[str] = ("AAPL",),
    lookback: int = 5,
    timeframe: str = "1day",
    tries: int = 4,
) -> RunResult:
    """Run the daily DAG's tasks for ``day`` as Airflow would, retries included, at the market's now."""
    run_id = f"manual__{day.isoformat()}_{next(_run_numbers)}"
    params = {"date": day.isoformat(), "symbols": list(symbols), "lookback_sessions": lookback}
    if timeframe:
        params["timeframe"] = timeframe
    before = market.historical_requests()
    groups = daily.plan(day.isoformat(), params, RunContext(DAG_ID, run_id), now=market.clock())
    for group in groups:
        for try_number in range(1, tries + 1):
            try:
                daily.collect(group, RunContext(DAG_ID, run_id, try_number=try_number))
            except CollectionError as failed:
                if failed.retryable:
                    continue
            except PermanentError:
                pass
            break
    result = RunResult(run_id, market.historical_requests() - before)
    try:
        daily.summarize(day.isoformat(), groups, params, RunContext(DAG_ID, run_id))
    except PermanentError as problems:
        result.problems = str(problems)
    market.runs.append(result)
    return result


def stored_daily(url: str, symbol: str) -> dict[dt.date, tuple]:
    """Return the symbol's stored daily bars by session: open, high, low, close, volume, wap, count."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT md.timestamp, md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count
            FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            WHERE s.symbol = %s AND md.timeframe = '1day' ORDER BY md.timestamp
            """,
            (symbol,),
        ).fetchall()
    return {row[0].date(): tuple(row[1:]) for row in rows}


def stored_intraday(url: str, symbol: str, timeframe: str = "1min") -> list[tuple]:
    """Return the symbol's stored intraday bars, oldest first, as ``stored_bar`` gives them."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT md.timestamp, md.open, md.high, md.low, md.close, md.volume, md.wap, md.bar_count
            FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            WHERE s.symbol = %s AND md.timeframe = %s ORDER BY md.timestamp
            """,
            (symbol, timeframe),
        ).fetchall()


def no_data(url: str, symbol: str, timeframe: str = "1day") -> dict[dt.date, bool]:
    """Return the symbol's recorded no-data sessions, each with whether it is settled."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT n.session, n.settled_at IS NOT NULL FROM no_data_sessions n
            JOIN symbols s ON s.id = n.symbol_id WHERE s.symbol = %s AND n.timeframe = %s
            """,
            (symbol, timeframe),
        ).fetchall()
    return dict(rows)


def attempts(url: str, run_id: str) -> list[tuple[str, str, str, int]]:
    """Return the run's attempts, oldest first: (symbol, timeframe, status, try number)."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT s.symbol, cl.timeframe, cl.status, cl.try_number FROM collection_logs cl
            JOIN symbols s ON s.id = cl.symbol_id WHERE cl.run_id = %s ORDER BY cl.id
            """,
            (run_id,),
        ).fetchall()
