"""Read the campaign's independent sources into the invariants' plain values.

The simulator's model and request log (what IB serves, what was asked), the market-data database
(what was stored) and the processes of this machine (who held a request open). See
docs/fault-campaign.md#what-is-checked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import astuple, dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import psutil
import psycopg

from campaign.invariants import Bars, Expected, Key, Request, Revision, Snapshot, Values
from ibkr_market_data.derived import DERIVABLE, DeriveSettings, settings_from_env
from ibkr_market_data.timeframes import DAILY, ONE_MINUTE, TIMEFRAMES, TimeframePolicy, by_bar_size
from ibkr_market_data_dev.simulated_ib import stored_bar
from tws_simulator import history
from tws_simulator.market import MarketModel, NoSuchSession, SimBar
from tws_simulator.request_log import RequestRecord
from tws_simulator.served import ServedMarket

#: Calendar days before a trading date that hold any exchange's lookback window of 30 sessions.
_WINDOW_DAYS = 80


@dataclass(frozen=True)
class Symbol:
    """A symbol the campaign loads, and its priority (which decides its intraday timeframes)."""

    symbol: str
    priority: int


def window_keys(
    model: MarketModel,
    symbols: Iterable[Symbol],
    trading_date: dt.date,
    lookback: int,
    policy: TimeframePolicy,
) -> set[Key]:
    """Return the keys a daily run of ``trading_date`` covers by configuration, from the model's calendars.

    Each symbol's last ``lookback`` sessions up to the date, in every timeframe its priority gets.
    Not the collector's plan: a plan that leaves a key out still has it checked.
    """
    keys: set[Key] = set()
    for entry in symbols:
        sessions = model.sessions(entry.symbol, trading_date - dt.timedelta(days=_WINDOW_DAYS), trading_date)
        for tf in policy.for_priority(entry.priority):
            keys.update((entry.symbol, tf.name, day) for day in sessions[-lookback:])
    return keys


def plan_keys(conn: psycopg.Connection, runs: Iterable[tuple[str, str]]) -> set[Key]:
    """Return the keys the plans of ``runs`` ((dag_id, run_id)) cover, from ``planned_groups``."""
    keys: set[Key] = set()
    for dag_id, run_id in runs:
        rows = conn.execute(
            """
            SELECT item.value FROM planned_groups, jsonb_array_elements(items) AS item (value)
            WHERE dag_id = %s AND run_id = %s
            """,
            (dag_id, run_id),
        ).fetchall()
        for (item,) in rows:
            if not isinstance(item, dict) or "symbol" not in item or "bar_size" not in item:
                continue
            sessions = item.get("sessions") or [item.get("session")]
            # A 1-minute target builds its ``derive`` timeframes from its minutes: planned bars too.
            days = [dt.date.fromisoformat(day) for day in sessions if day]
            for timeframe in (by_bar_size(item["bar_size"]).name, *item.get("derive", ())):
                keys.update((item["symbol"], timeframe, day) for day in days)
    return keys


def bar_values(bar: SimBar) -> tuple[dt.datetime, Values]:
    """Return a simulated bar as the collector stores it: its timestamp and values."""
    stored = astuple(stored_bar(bar))
    return stored[0], stored[1:]


@dataclass(frozen=True)
class Served:
    """What IB serves for the covered keys, and how many of them a market property changed."""

    expected: Expected
    changed_by_properties: int


def derived_keys(keys: Collection[Key], settings: DeriveSettings | None = None) -> set[Key]:
    """Return the 5min/1hour keys the collector builds from their 1-minute bars rather than asks IB for.

    Those of a key whose 1-minute session is covered too, outside the cross-check's sample
    (``IBKR_DERIVE_INTRADAY``, ``IBKR_DERIVE_CROSS_CHECK_PERCENT``; read here as the collector reads them).
    """
    settings = settings or settings_from_env()
    if not settings.enabled:
        return set()
    derivable = {tf.name for tf in DERIVABLE}
    return {
        (symbol, timeframe, session)
        for symbol, timeframe, session in keys
        if timeframe in derivable
        and (symbol, ONE_MINUTE.name, session) in keys
        and not settings.asks_ib(symbol, session)
    }


def built_from_minutes(bars: Sequence[SimBar], minutes: Sequence[SimBar]) -> tuple[SimBar, ...]:
    """Return IB's ``bars`` as built from its ``minutes``: WAP weighted by volume, trade counts summed.

    Prices, volume and times stay the simulator's own (``aggregated`` from the same slots), so a
    derived bar is checked against them; the simulator's own WAP and trade count of a bigger bar are
    not its minutes' (docs/intraday.md#derived-bars).
    """
    ends = [bar.date for bar in bars[1:]]
    rebuilt = []
    for at, bar in enumerate(bars):
        end = ends[at] if at < len(ends) else None
        parts = [m for m in minutes if m.date >= bar.date and (end is None or m.date < end)]  # type: ignore[operator]
        volume = sum(part.volume for part in parts)
        wap = bar.wap
        if volume:
            weighted = sum((part.wap * part.volume for part in parts), Decimal(0)) / volume
            wap = weighted.quantize(Decimal("1e-8"), rounding=ROUND_HALF_UP)
        rebuilt.append(replace(bar, wap=wap, bar_count=sum(part.bar_count for part in parts)))
    return tuple(rebuilt)


def served_bars(
    served: ServedMarket, keys: Iterable[Key], as_of: dt.datetime, derived: Collection[Key] | None = None
) -> Served:
    """Return what IB serves as of ``as_of`` for ``keys``; a key is whole when it has every scheduled bar.

    :param derived: the keys built from their 1-minute bars; default ``derived_keys(keys)``.
    """
    model = served.model
    keys = set(keys)
    derived = derived_keys(keys) if derived is None else derived
    bars: dict[Key, Bars] = {}
    whole: set[Key] = set()
    changed = 0
    for key in keys:
        symbol, timeframe, session = key
        tf = TIMEFRAMES[timeframe]
        view = served.view(model.contract(symbol), as_of)
        try:
            if tf.bar_seconds is None:
                bar = view.daily_bar(session)
                plain: tuple[SimBar, ...] = (model.daily_bar(symbol, session),)
                served_now: tuple[SimBar, ...] = () if bar is None else (bar,)
            else:
                served_now = view.intraday_bars(session, tf.bar_seconds, True)
                plain = model.intraday_bars(symbol, session, tf.bar_seconds, True)
                if key in derived:
                    served_now = built_from_minutes(served_now, view.intraday_bars(session, 60, True))
                    plain = built_from_minutes(plain, model.intraday_bars(symbol, session, 60, True))
        except NoSuchSession:  # before the symbol's listing: the window asks, IB serves nothing
            served_now = plain = ()
        bars[key] = dict(bar_values(bar) for bar in served_now)
        if len(served_now) == len(plain) and served_now:
            whole.add(key)
        if served_now != plain:
            changed += 1
    return Served(Expected(bars, frozenset(whole)), changed)


def db_snapshot(conn: psycopg.Connection, model: MarketModel, keys: Collection[Key]) -> Snapshot:
    """Return the stored bars, their first-write times and the no-data records of ``keys``."""
    wanted = set(keys)
    symbols = sorted({key[0] for key in wanted})
    zones = {symbol: model.session_index(model.contract(symbol)) for symbol in symbols}
    bars: dict[Key, dict[dt.datetime, Values]] = {}
    stored_at: dict[Key, float] = {}
    rows = conn.execute(
        """
        SELECT s.symbol, md.timeframe, md.timestamp, md.open, md.high, md.low, md.close, md.volume, md.wap,
               md.bar_count, EXTRACT(EPOCH FROM md.created_at AT TIME ZONE current_setting('TimeZone'))
        FROM market_data md JOIN symbols s ON s.id = md.symbol_id
        WHERE s.symbol = ANY(%s)
        """,
        (symbols,),
    ).fetchall()
    for symbol, timeframe, timestamp, *values, created in rows:
        key = (symbol, timeframe, _session_of(zones[symbol], timeframe, timestamp))
        if key not in wanted:
            continue
        bars.setdefault(key, {})[timestamp] = tuple(values)  # type: ignore[assignment]
        stored_at[key] = max(stored_at.get(key, 0.0), float(created))
    no_data = {
        (symbol, timeframe, session)
        for symbol, timeframe, session in conn.execute(
            """
            SELECT s.symbol, n.timeframe, n.session
            FROM no_data_sessions n JOIN symbols s ON s.id = n.symbol_id
            """
        ).fetchall()
    } & wanted
    return Snapshot(bars, stored_at, frozenset(no_data))


def _session_of(index: Any, timeframe: str, timestamp: dt.datetime) -> dt.date | None:
    if timeframe == DAILY.name:
        return timestamp.date()
    position = index.containing(timestamp.replace(tzinfo=dt.UTC).timestamp())
    return None if position is None else index.dates[position]


def revisions(conn: psycopg.Connection, model: MarketModel) -> list[Revision]:
    """Return every ``bar_revisions`` row, keyed as the invariants count."""
    rows = conn.execute(
        """
        SELECT s.symbol, r.timeframe, r.timestamp,
               r.old_open, r.old_high, r.old_low, r.old_close, r.old_volume, r.old_wap, r.old_bar_count,
               r.new_open, r.new_high, r.new_low, r.new_close, r.new_volume, r.new_wap, r.new_bar_count
        FROM bar_revisions r JOIN symbols s ON s.id = r.symbol_id ORDER BY r.id
        """
    ).fetchall()
    found = []
    for symbol, timeframe, timestamp, *values in rows:
        index = model.session_index(model.contract(symbol))
        session = _session_of(index, timeframe, timestamp)
        if session is None:
            continue
        found.append(
            Revision((symbol, timeframe, session), timestamp, tuple(values[:7]), tuple(values[7:]))  # type: ignore[arg-type]
        )
    return found


def pending_attempts(conn: psycopg.Connection, dag_id: str, run_id: str) -> int:
    """Return the (symbol, timeframe) pairs of a run whose latest attempt is still ``pending``."""
    row = conn.execute(
        """
        SELECT COUNT(*) FROM (
            SELECT DISTINCT ON (symbol_id, timeframe) status FROM collection_logs
            WHERE dag_id = %s AND run_id = %s ORDER BY symbol_id, timeframe, try_number DESC, id DESC
        ) latest WHERE status = 'pending'
        """,
        (dag_id, run_id),
    ).fetchone()
    return int(row[0]) if row else 0


def requests_of(records: Iterable[RequestRecord], model: MarketModel) -> list[Request]:
    """Return the historical requests of the log, each with the sessions its window covers."""
    found = []
    for record in records:
        if record.kind != "historical" or not record.symbol:
            continue
        try:
            tf = by_bar_size(record.bar_size)
            query = history.build_query(
                end_date_time=record.end_date_time,
                duration=record.duration,
                bar_size=record.bar_size,
                use_rth=bool(record.use_rth),
                what_to_show=record.what_to_show or "TRADES",
                format_date=1,
                now=record.received_at,
            )
            contract = model.contract(record.symbol)
        except Exception:  # noqa: BLE001 (a request the simulator refused covers no session)
            continue
        index = model.session_index(contract)
        start, end = query.start.timestamp(), query.end.timestamp()
        if tf.bar_seconds is None:
            lo, hi = index.closing_within(start, end)
        else:
            lo, hi = index.overlapping(start, end)
        found.append(
            Request(
                record.received_at.timestamp(),
                record.symbol,
                tf.name,
                tuple(index.dates[lo:hi]),
                record.outcome,
            )
        )
    return found


# -- processes ---------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """Return ``root`` and every descendant of it: task runners that lead process groups of their own too."""
    try:
        process = psutil.Process(root)
        return [root, *(child.pid for child in process.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def pids_with_title(title: str) -> Iterator[int]:
    """Yield the pids whose command line contains ``title``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title in cmdline:
            yield int(entry.name)


def client_ports(pids: Iterable[int], server_port: int) -> set[int]:
    """Return the local ports of the TCP connections ``pids`` hold to 127.0.0.1:``server_port``."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = _readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return {
        local for local, remote, _, inode in _tcp_connections() if inode in inodes and remote == server_port
    }


def _tcp_connections() -> Iterator[tuple[int, int, str, str]]:
    """Yield each IPv4 and IPv6 TCP connection's local port, remote port, state code and socket inode."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
            yield local, remote, fields[3], fields[9]


#: /proc/net/tcp's code of an established connection (a FIN read moves it on, a reset removes it).
_ESTABLISHED = "01"


def established(server_port: int, ports: Collection[int]) -> set[int]:
    """Return which of the client ``ports`` still have an established connection to ``server_port``.

    Read on the server's side: a port leaves the set once the kernel holds the client's end
    (its FIN or reset arrived), whether or not the server has read it yet.
    """
    return {
        remote
        for local, remote, state, _ in _tcp_connections()
        if local == server_port and remote in ports and state == _ESTABLISHED
    }


def _readlink(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return ""


def open_requests(records: Sequence[RequestRecord], ports: Collection[int]) -> list[RequestRecord]:
    """Return the historical requests still open (pending) that clients on ``ports`` sent."""
    return [
        r for r in records if r.kind == "historical" and r.outcome == "pending" and r.client_port in ports
    ]


def served_versions(
    served: ServedMarket, keys: Iterable[Key], moments: Iterable[dt.datetime]
) -> dict[tuple[Key, dt.datetime], set[Values]]:
    """Return every version of each bar of ``keys`` that IB served at one of ``moments``."""
    versions: dict[tuple[Key, dt.datetime], set[Values]] = {}
    wanted = set(keys)
    for moment in moments:
        for key in wanted:
            symbol, timeframe, session = key
            tf = TIMEFRAMES[timeframe]
            view = served.view(served.model.contract(symbol), moment)
            if tf.bar_seconds is None:
                daily = view.daily_bar(session)
                bars: tuple[SimBar, ...] = () if daily is None else (daily,)
            else:
                bars = view.intraday_bars(session, tf.bar_seconds, True)
            for bar in bars:
                timestamp, values = bar_values(bar)
                versions.setdefault((key, timestamp), set()).add(values)
    return versions
