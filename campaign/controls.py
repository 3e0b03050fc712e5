"""Negative controls: each invariant of the campaign, broken on purpose, must catch the breakage.

One daily run with a fault aimed at a symbol no run requests (the "fired" check must fail it) and a
bar deleted after it ended green (silent); then, on its final state, one breakage at a time, each
judged from the real sources and undone. See docs/fault-campaign.md#negative-controls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from campaign.run import DAILY, TRADING_DATE, Verdict
from campaign.scenarios import Scenario
from ibkr_market_data.daily_plan import ib_end_of_day

if TYPE_CHECKING:
    from campaign.run import Campaign

CONTROLS_NAME = "negative controls"
#: Client ids of the harness's own IB clients, outside the collector's range (1..32).
_HARNESS_CLIENT_ID = 90


@dataclass
class Control:
    """One invariant broken on purpose: how, its value before and after, and whether it caught it."""

    invariant: str
    how: str
    before: str
    after: str
    caught: bool


def run_controls(campaign: Campaign) -> list[Control]:
    """Break each invariant once against a real run and its final state; return what each caught."""
    controls: list[Control] = []
    unrequested = _unrequested_symbol(campaign)
    silent_before: list[int] = []

    def delete_after_green_run(campaign: Campaign, run_id: str) -> str:
        silent_before.append(len(campaign.verdict(TRADING_DATE, campaign.last_runs, scenario).differences))
        key = _delete_a_bar(campaign, "1min")
        return f"deleted the 1min bar {key} after the run ended"

    def aim_elsewhere(campaign: Campaign, run_id: str) -> str:
        campaign.inject(unrequested, drop_connection=2)
        return f"drop_connection=2 on {unrequested}, which no run requests"

    def clear(campaign: Campaign, run_id: str) -> str:
        campaign.clear_faults()
        return ""

    scenario = Scenario(CONTROLS_NAME, "harness", during=aim_elsewhere, after=clear)
    campaign.breaks = [delete_after_green_run]
    try:
        outcome = campaign.run(scenario)
    finally:
        campaign.breaks = []
    controls.append(
        Control(
            "fired",
            f"the fault is set for {unrequested}, which no run requests",
            "fired (as in every scenario that passes)",
            outcome.fired,
            caught=not outcome.fired_ok,
        )
    )
    controls.append(
        Control(
            "silent",
            "a 1min bar deleted once the first run ended green; the second run stores it again",
            str(silent_before[0] if silent_before else "?"),
            f"{outcome.silent} (bars lost at the end: {outcome.bars_lost})",
            caught=outcome.silent > 0 and outcome.first_run == "success" and outcome.bars_lost == 0,
        )
    )
    runs = campaign.last_runs
    for invariant, how, measure, breakage in _final_state_controls(campaign):
        before = measure(campaign.verdict(TRADING_DATE, runs, scenario))
        undo = breakage(campaign)
        after = measure(campaign.verdict(TRADING_DATE, runs, scenario))
        if undo is not None:
            undo()
        controls.append(Control(invariant, how, str(before), str(after), caught=after > before))
    return controls


Measure = Callable[[Verdict], int]
Breakage = Callable[["Campaign"], "Callable[[], None] | None"]


def _final_state_controls(campaign: Campaign) -> list[tuple[str, str, Measure, Breakage]]:
    return [
        ("lost", "one stored 5min bar deleted", lambda v: len(v.differences), _delete_bar_undoably("5min")),
        ("lost", "one stored daily close changed by 0.01", lambda v: len(v.differences), _change_a_close),
        (
            "needless requests",
            "a harness client asks IB again for a daily session stored whole",
            lambda v: len(v.needless),
            _ask_again,
        ),
        (
            "fake revisions",
            "a bar_revisions row whose old and new values are the same",
            lambda v: len(v.fake_revisions),
            _fake_revision,
        ),
        (
            "unfinished (collection_logs)",
            "a later attempt of the last run left pending",
            lambda v: len(v.unfinished),
            _pending_attempt,
        ),
        (
            "unfinished (Airflow)",
            "a collect task of the last run marked failed through the REST API",
            lambda v: len(v.unfinished),
            _fail_a_task,
        ),
        (
            "IB rules broken",
            "a second client on a client id in use that no outside client held (326)",
            lambda v: len(v.broken),
            _reuse_a_client_id,
        ),
    ]


def _unrequested_symbol(campaign: Campaign) -> str:
    loaded = {s.symbol for s in campaign.universe}
    return next(c.symbol for c in campaign.simulator.model.contracts if c.symbol not in loaded)


def _one_bar(campaign: Campaign, timeframe: str) -> tuple[str, dt.datetime, tuple[object, ...]]:
    with psycopg.connect(campaign.market_db) as conn:
        row = conn.execute(
            """
            SELECT s.symbol, md.timestamp, md.* FROM market_data md JOIN symbols s ON s.id = md.symbol_id
            WHERE md.timeframe = %s ORDER BY md.timestamp DESC, s.symbol LIMIT 1
            """,
            (timeframe,),
        ).fetchone()
    if row is None:
        raise RuntimeError(f"no {timeframe} bar stored to break a control with")
    return row[0], row[1], tuple(row[2:])


def _delete_a_bar(campaign: Campaign, timeframe: str) -> str:
    symbol, timestamp, _ = _one_bar(campaign, timeframe)
    with psycopg.connect(campaign.market_db) as conn:
        conn.execute(
            "DELETE FROM market_data WHERE timeframe = %s AND timestamp = %s "
            "AND symbol_id = (SELECT id FROM symbols WHERE symbol = %s)",
            (timeframe, timestamp, symbol),
        )
    return f"{symbol} {timestamp}"


def _delete_bar_undoably(timeframe: str) -> Breakage:
    def breakage(campaign: Campaign) -> Callable[[], None]:
        symbol, timestamp, row = _one_bar(campaign, timeframe)
        _delete_a_bar(campaign, timeframe)

        def undo() -> None:
            placeholders = ", ".join(["%s"] * len(row))
            with psycopg.connect(campaign.market_db) as conn:
                conn.execute(f"INSERT INTO market_data VALUES ({placeholders})", row)  # noqa: S608

        return undo

    return breakage


def _change_a_close(campaign: Campaign) -> Callable[[], None]:
    symbol, timestamp, _ = _one_bar(campaign, "1day")
    where = "timeframe = '1day' AND timestamp = %s AND symbol_id = (SELECT id FROM symbols WHERE symbol = %s)"
    with psycopg.connect(campaign.market_db) as conn:
        original = conn.execute(
            f"SELECT close, high FROM market_data WHERE {where}",  # noqa: S608 (a constant condition)
            (timestamp, symbol),
        ).fetchone()
        conn.execute(
            f"UPDATE market_data SET close = close + 0.01, high = GREATEST(high, close + 0.01) WHERE {where}",  # noqa: S608
            (timestamp, symbol),
        )
    assert original is not None

    def undo() -> None:
        with psycopg.connect(campaign.market_db) as conn:
            conn.execute(
                f"UPDATE market_data SET close = %s, high = %s WHERE {where}",  # noqa: S608
                (*original, timestamp, symbol),
            )

    return undo


def _ask_again(campaign: Campaign) -> None:
    from ib_insync import IB, Stock

    symbol, _, _ = _one_bar(campaign, "1day")
    listing = next(s for s in campaign.universe if s.symbol == symbol)
    ib = IB()
    ib.connect("127.0.0.1", campaign.port, clientId=_HARNESS_CLIENT_ID, readonly=True, timeout=10)
    try:
        contract = Stock(
            listing.symbol, listing.exchange, listing.currency, primaryExchange=listing.primary_exchange
        )
        ib.reqHistoricalData(
            contract, ib_end_of_day(TRADING_DATE, listing.primary_exchange), "1 D", "1 day", "TRADES", True, 1
        )
    finally:
        ib.disconnect()


def _fake_revision(campaign: Campaign) -> Callable[[], None]:
    symbol, timestamp, _ = _one_bar(campaign, "1day")
    with psycopg.connect(campaign.market_db) as conn:
        row = conn.execute(
            """
            INSERT INTO bar_revisions (symbol_id, timeframe, timestamp,
                old_open, old_high, old_low, old_close, old_volume, old_wap, old_bar_count,
                new_open, new_high, new_low, new_close, new_volume, new_wap, new_bar_count)
            SELECT symbol_id, timeframe, timestamp, open, high, low, close, volume, wap, bar_count,
                   open, high, low, close, volume, wap, bar_count
            FROM market_data WHERE timeframe = '1day' AND timestamp = %s
              AND symbol_id = (SELECT id FROM symbols WHERE symbol = %s)
            RETURNING id
            """,
            (timestamp, symbol),
        ).fetchone()
    assert row is not None

    def undo() -> None:
        with psycopg.connect(campaign.market_db) as conn:
            conn.execute("DELETE FROM bar_revisions WHERE id = %s", (row[0],))

    return undo


def _pending_attempt(campaign: Campaign) -> Callable[[], None]:
    run_id = [rid for dag, rid in campaign.last_runs if dag == DAILY][-1]
    with psycopg.connect(campaign.market_db) as conn:
        row = conn.execute(
            """
            INSERT INTO collection_logs (symbol_id, collection_type, timeframe, start_date, end_date, status,
                                         dag_id, run_id, try_number)
            SELECT symbol_id, collection_type, timeframe, start_date, end_date, 'pending', dag_id, run_id, 99
            FROM collection_logs WHERE dag_id = %s AND run_id = %s ORDER BY id LIMIT 1
            RETURNING id
            """,
            (DAILY, run_id),
        ).fetchone()
    assert row is not None

    def undo() -> None:
        with psycopg.connect(campaign.market_db) as conn:
            conn.execute("DELETE FROM collection_logs WHERE id = %s", (row[0],))

    return undo


def _fail_a_task(campaign: Campaign) -> None:
    run_id = [rid for dag, rid in campaign.last_runs if dag == DAILY][-1]
    ti = next(ti for ti in campaign.stack.task_instances(DAILY, run_id) if ti["task_id"] == "collect")
    campaign.stack.set_task_instance_state(DAILY, run_id, "collect", ti["map_index"], "failed")


def _reuse_a_client_id(campaign: Campaign) -> None:
    from ib_insync import IB

    first, second = IB(), IB()
    first.connect("127.0.0.1", campaign.port, clientId=_HARNESS_CLIENT_ID + 1, readonly=True, timeout=10)
    try:
        try:
            second.connect(
                "127.0.0.1", campaign.port, clientId=_HARNESS_CLIENT_ID + 1, readonly=True, timeout=5
            )
        except Exception:  # noqa: BLE001 (the refusal is the point)
            pass
        second.disconnect()
    finally:
        first.disconnect()
