"""The daily bench's steady state: a database filled up to the day before, so a run collects one session."""

import datetime as dt

import psycopg
import pytest

from bench import steady_state
from bench.verify import verify_run
from campaign.observe import plan_keys
from tests.integration.daily_runs import DAG_ID, daily_run, start_market

#: A Friday every exchange trades; the simulator's clock (the Monday after) has closed it.
DAY = dt.date(2025, 6, 27)
NOW = dt.datetime(2025, 6, 30, 12, 0, tzinfo=dt.UTC)
#: Priority 1 (daily and three intraday timeframes) on NASDAQ, ASX and ARCA.
SYMBOLS = ("AAPL", "BHP", "SPY")
LOOKBACK = 5


#: AAPL (priority 1) and LYC (ASX, priority 2: daily bars alone at the configured timeframes).
MIXED = ("AAPL", "LYC")


@pytest.fixture
def market(tws_simulator_factory, monkeypatch, market_db):
    """Return a market with the shipped timeframe policy (intraday bars for priority 1) and SYMBOLS loaded."""
    return shipped_policy_market(tws_simulator_factory, monkeypatch, market_db, SYMBOLS)


def shipped_policy_market(tws_simulator_factory, monkeypatch, market_db, symbols):
    monkeypatch.delenv("IBKR_INTRADAY_MAX_PRIORITY", raising=False)
    monkeypatch.delenv("IBKR_INTRADAY_TIMEFRAMES", raising=False)
    monkeypatch.delenv("IBKR_DERIVE_INTRADAY", raising=False)
    # No cross-check sample: every 5-minute and hourly session is built from the minutes, none asked.
    monkeypatch.setenv("IBKR_DERIVE_CROSS_CHECK_PERCENT", "0")
    return start_market(tws_simulator_factory, monkeypatch, market_db, NOW, symbols=symbols)


def measured_run(market, prefilled, symbols=SYMBOLS, timeframe=""):
    started = dt.datetime.now(dt.UTC)
    result = daily_run(market, DAY, symbols, lookback=LOOKBACK, timeframe=timeframe)
    assert not result.problems
    with psycopg.connect(market.db) as conn:
        planned = plan_keys(conn, [(DAG_ID, result.run_id)])
    verification = verify_run(market.db, market.simulator, DAG_ID, result.run_id, started, prefilled)
    return result, planned, verification


def test_a_run_on_the_filled_template_asks_once_per_symbol_timeframe_for_the_date_alone(market):
    filled = steady_state.prefill(market.db, market.simulator.served, DAY, LOOKBACK, market.clock())
    timeframes = {(symbol, tf) for symbol, tf, _ in filled.keys}
    assert len(timeframes) == len(SYMBOLS) * 4
    assert DAY not in {key[2] for key in filled.keys}
    assert market.historical_requests() == 0, "filled from the model, not through IB"

    result, planned, verification = measured_run(market, filled.keys)

    steady = steady_state.steady_state(planned, filled.keys, DAY)
    assert steady.ok, steady.examples
    assert steady.symbol_timeframes == len(SYMBOLS) * 4
    # Daily and 1-minute bars asked; 5-minute and hourly bars built from the minutes.
    assert result.requests == len(SYMBOLS) * 2
    assert verification.ok, verification.examples
    # The date's keys alone are the run's work: one per symbol and timeframe.
    assert verification.planned_keys == len(SYMBOLS) * 4
    intraday = steady_state.intraday_requests_per_symbol_day(
        requests_by_bar_size(market), planned, filled.keys
    )
    assert intraday["symbol_days"] == len(SYMBOLS)
    assert intraday["per_symbol_day"] == 1.0  # the 1-minute bars alone


def requests_by_bar_size(market):
    counts: dict[str, int] = {}
    for record in market.simulator.request_log.historical():
        counts[record.bar_size] = counts.get(record.bar_size, 0) + 1
    return counts


def test_without_the_template_a_run_fills_its_whole_lookback_and_is_no_steady_state(market):
    """Negative control: an empty database makes the run plan every earlier session of its window."""
    result, planned, _ = measured_run(market, ())

    steady = steady_state.steady_state(planned, (), DAY)
    assert not steady.ok and steady.earlier_sessions_planned > 0
    assert result.requests > len(SYMBOLS) * 4


def test_bars_stored_by_the_bench_but_not_named_are_counted_as_stored_before_the_run(market):
    """Negative control of ``stored_by_bench``: the template's daily bars the run re-asks are not its work."""
    filled = steady_state.prefill(market.db, market.simulator.served, DAY, LOOKBACK, market.clock())

    _, _, verification = measured_run(market, ())

    assert not verification.ok and verification.preexisting == len(SYMBOLS) * (LOOKBACK - 1)
    assert filled.bars > 0


def test_sessions_before_a_listing_are_filled_as_settled_no_data(
    tws_simulator_factory, monkeypatch, market_db
):
    """GYG lists on 2025-06-16: a lookback to 2025-06-18 holds two sessions IB serves nothing for."""
    market = start_market(tws_simulator_factory, monkeypatch, market_db, NOW, symbols=("GYG",))
    day = dt.date(2025, 6, 18)

    filled = steady_state.prefill(market.db, market.simulator.served, day, LOOKBACK, market.clock())

    with psycopg.connect(market.db) as conn:
        settled = conn.execute(
            "SELECT session FROM no_data_sessions WHERE settled_at IS NOT NULL ORDER BY session"
        ).fetchall()
    assert settled == [(dt.date(2025, 6, 12),), (dt.date(2025, 6, 13),)]
    assert (filled.no_data_sessions, filled.bars) == (2, 2)
    result = daily_run(market, day, ("GYG",), lookback=LOOKBACK, timeframe="")
    assert result.requests == 1 and not result.problems


def test_a_template_filled_for_a_1min_plan_holds_its_symbols_1min_sessions(
    tws_simulator_factory, monkeypatch, market_db
):
    """The scale section's 1-minute row: a priority-2 symbol's 1-minute sessions are filled for it."""
    market = shipped_policy_market(tws_simulator_factory, monkeypatch, market_db, MIXED)
    plans = (*steady_state.CONFIGURED_PLAN, (len(MIXED), "1min"))

    filled = steady_state.prefill(market.db, market.simulator.served, DAY, LOOKBACK, market.clock(), plans)

    timeframes = {(symbol, tf) for symbol, tf, _ in filled.keys}
    intraday = {("AAPL", "1min"), ("AAPL", "5min"), ("AAPL", "1hour")}
    assert timeframes == {("AAPL", "1day"), ("LYC", "1day"), ("LYC", "1min"), *intraday}
    # AAPL's 1-minute sessions, in both plans, are filled once: 4 sessions x 6 symbol-timeframes.
    assert len(filled.keys) == (LOOKBACK - 1) * len(timeframes)
    result, planned, verification = measured_run(market, filled.keys, MIXED, "1min")
    steady = steady_state.steady_state(planned, filled.keys, DAY)
    assert steady.ok, steady.examples
    assert result.requests == len(MIXED)
    assert verification.ok and verification.planned_keys == len(MIXED), verification.examples


def test_a_1min_plan_beyond_the_filled_symbols_is_no_steady_state(
    tws_simulator_factory, monkeypatch, market_db
):
    """Negative control: a 1-minute plan of the first symbol alone leaves LYC's earlier sessions."""
    market = shipped_policy_market(tws_simulator_factory, monkeypatch, market_db, MIXED)
    plans = (*steady_state.CONFIGURED_PLAN, (1, "1min"))

    filled = steady_state.prefill(market.db, market.simulator.served, DAY, LOOKBACK, market.clock(), plans)

    assert ("LYC", "1min") not in {(symbol, tf) for symbol, tf, _ in filled.keys}
    _, planned, _ = measured_run(market, filled.keys, MIXED, "1min")
    steady = steady_state.steady_state(planned, filled.keys, DAY)
    assert not steady.ok and steady.earlier_sessions_planned == LOOKBACK - 1
    assert all(example.startswith("LYC 1min") for example in steady.examples)
