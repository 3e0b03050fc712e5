"""Every fault, injected per symbol or for all, set at start or flipped while the server runs."""

from __future__ import annotations

import time

import pytest
from ib_insync import RequestError, Stock

from tests.simulator.waiting import run_until
from tws_simulator.faults import UnknownFault

END = "20250627 23:59:59 US/Eastern"


def stock(simulator, symbol: str) -> Stock:
    contract = simulator.model.contract(symbol)
    return Stock(contract.symbol, contract.exchange, contract.currency)


def daily(ib, simulator, symbol: str, **options):
    return ib.reqHistoricalData(stock(simulator, symbol), END, "1 W", "1 day", "TRADES", True, **options)


def error_code(ib, simulator, symbol: str) -> int:
    with pytest.raises(RequestError) as raised:
        daily(ib, simulator, symbol)
    return raised.value.code


@pytest.fixture
def ib(tws_simulator, ib_client_factory):
    client = ib_client_factory(tws_simulator)
    client.RaiseRequestErrors = True
    return client


def test_no_permission_for_one_symbol_can_be_flipped_off(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", no_permission=True)
    assert error_code(ib, tws_simulator, "AAPL") == 354
    assert len(daily(ib, tws_simulator, "MSFT")) == 5  # other symbols unaffected
    tws_simulator.faults.clear("AAPL")
    assert len(daily(ib, tws_simulator, "AAPL")) == 5
    [record] = tws_simulator.request_log.historical(symbol="AAPL", outcome="error:354")
    assert record.error_message == "Requested market data is not subscribed."


def test_unknown_contract_fails_details_and_bars_with_200(tws_simulator, ib) -> None:
    tws_simulator.faults.set("BHP", unknown_contract=True)
    assert error_code(ib, tws_simulator, "BHP") == 200
    with pytest.raises(RequestError) as raised:
        ib.reqContractDetails(stock(tws_simulator, "BHP"))
    assert raised.value.code == 200
    assert "No security definition has been found" in raised.value.message


def test_ambiguous_contract_unless_primary_exchange_or_con_id_is_given(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", ambiguous=True)
    assert error_code(ib, tws_simulator, "AAPL") == 200
    with_primary = Stock("AAPL", "SMART", "USD", primaryExchange="NASDAQ")
    assert len(ib.reqHistoricalData(with_primary, END, "1 W", "1 day", "TRADES", True)) == 5
    [details] = ib.reqContractDetails(with_primary)
    by_con_id = Stock(conId=details.contract.conId, exchange="SMART")
    assert len(ib.reqHistoricalData(by_con_id, END, "1 W", "1 day", "TRADES", True)) == 5


def test_no_data_for_all_symbols(tws_simulator, ib) -> None:
    tws_simulator.faults.set(None, no_data=True)
    with pytest.raises(RequestError) as raised:
        daily(ib, tws_simulator, "CBA")
    assert raised.value.code == 162 and "HMDS query returned no data: CBA@ASX Trades" in raised.value.message


def test_injected_pacing_violations_are_counted_and_not_the_clients_fault(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", pacing_violation=2)
    assert error_code(ib, tws_simulator, "AAPL") == 162
    with pytest.raises(RequestError, match="pacing violation"):
        ib.reqHistoricalData(stock(tws_simulator, "AAPL"), END, "2 W", "1 day", "TRADES", True)
    assert len(daily(ib, tws_simulator, "AAPL")) == 5  # the count is used up
    assert tws_simulator.violations() == []


def test_corrupt_bars_have_high_below_low_and_negative_volume(tws_simulator, ib) -> None:
    tws_simulator.faults.set("MSFT", corrupt_bars=True)
    bars = daily(ib, tws_simulator, "MSFT")
    assert bars and all(bar.high < bar.low and bar.volume < 0 for bar in bars)


def test_corrupt_first_bar_breaks_only_the_oldest_bar_of_the_answer(tws_simulator, ib) -> None:
    tws_simulator.faults.set("MSFT", corrupt_first_bar=1)
    first, *rest = daily(ib, tws_simulator, "MSFT")
    assert first.high < first.low and first.volume < 0
    assert rest and all(bar.high >= bar.low and bar.volume >= 0 for bar in rest)
    again = daily(ib, tws_simulator, "MSFT")
    assert all(bar.high >= bar.low for bar in again), "a count of 1 breaks one answer only"


@pytest.mark.parametrize("defect", ["spike", "stale_price", "volume_units"])
def test_data_defects_keep_every_bar_valid_and_change_only_what_they_name(tws_simulator, ib, defect) -> None:
    clean = daily(ib, tws_simulator, "MSFT")
    tws_simulator.faults.set("MSFT", **{defect: 1})
    wrong = daily(ib, tws_simulator, "MSFT")
    assert [bar.date for bar in wrong] == [bar.date for bar in clean]
    assert all(
        0 < bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high for bar in wrong
    )
    if defect == "spike":
        assert wrong[-1].close == pytest.approx(3 * clean[-1].close)
        assert wrong[:-1] == clean[:-1]
    elif defect == "volume_units":
        assert wrong[-1].volume == 100 * clean[-1].volume and wrong[-1].close == clean[-1].close
        assert wrong[:-1] == clean[:-1]
    else:
        assert wrong[0] == clean[0]
        assert all(bar.close == clean[0].close and bar.volume == 0 for bar in wrong[1:])
    # BarDataList compares by identity: compare the bars.
    assert list(daily(ib, tws_simulator, "MSFT")) == list(clean), "a count of 1 changes one answer only"


def test_latency_delays_the_answer(tws_simulator_factory, ib_client_factory) -> None:
    simulator = tws_simulator_factory(faults={"*": {"latency_ms": 300, "jitter_ms": 50}})
    ib = ib_client_factory(simulator)
    started = time.monotonic()
    bars = daily(ib, simulator, "AAPL")
    assert len(bars) == 5 and 0.3 <= time.monotonic() - started < 5


def test_drop_connection_mid_request(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", drop_connection=True)
    with pytest.raises(ConnectionError):
        daily(ib, tws_simulator, "AAPL")
    run_until(ib, lambda: not ib.isConnected())
    assert tws_simulator.request_log.outcomes("historical", symbol="AAPL") == ["dropped"]


def test_a_request_that_never_answers_stays_open_until_the_client_cancels(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", never_answer=True)
    errors: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, message, contract: errors.append((req_id, code, message))
    assert len(daily(ib, tws_simulator, "AAPL", timeout=1)) == 0  # ib_insync cancels on its timeout
    [record] = tws_simulator.request_log.historical(symbol="AAPL")
    run_until(ib, lambda: errors)
    assert errors == [(record.req_id, 162, f"API historical data query cancelled: {record.req_id}")]
    assert tws_simulator.request_log.historical(symbol="AAPL")[0].outcome == "cancelled"
    assert tws_simulator.simulator.rules.open_requests == 0


def test_open_requests_refused_answers_322_without_a_violation(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", open_requests_refused=1)
    assert error_code(ib, tws_simulator, "AAPL") == 322
    assert len(daily(ib, tws_simulator, "AAPL")) == 5
    assert tws_simulator.violations() == []


def _notices(ib) -> list[tuple[int, int]]:
    """Return (reqId, code) of every message the client gets, in order, from now on."""
    seen: list[tuple[int, int]] = []
    ib.errorEvent += lambda req_id, code, message, contract: seen.append((req_id, code))
    return seen


def test_connectivity_lost_then_restored_with_data_kept(tws_simulator, ib_client_factory) -> None:
    tws_simulator.faults.set("AAPL", connectivity_lost=1, outage_ms=500)
    ib, bystander = ib_client_factory(tws_simulator), ib_client_factory(tws_simulator, client_id=2)
    seen, bystander_seen = _notices(ib), _notices(bystander)
    bars = daily(ib, tws_simulator, "AAPL")
    assert len(bars) == 5  # the answer waited for the link and arrived whole
    assert seen == [(-1, 1100), (-1, 1102)]
    run_until(bystander, lambda: len(bystander_seen) == 2)
    assert bystander_seen == [(-1, 1100), (-1, 1102)]  # IB's link is every client's
    assert tws_simulator.request_log.outcomes("historical", symbol="AAPL") == ["bars:5"]


def test_connectivity_lost_with_data_lost_drops_the_open_request(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", connectivity_lost_data_lost=1, outage_ms=200)
    seen = _notices(ib)
    assert len(daily(ib, tws_simulator, "AAPL", timeout=2)) == 0  # never answered: the client times out
    assert seen[:2] == [(-1, 1100), (-1, 1101)]
    assert tws_simulator.request_log.outcomes("historical", symbol="AAPL")[0] == "lost"
    assert tws_simulator.simulator.rules.open_requests == 0
    assert len(daily(ib, tws_simulator, "AAPL")) == 5  # sent again after 1101, it is answered


def test_farm_notices_arrive_before_an_answer_that_is_unharmed(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", farm_notices=1)
    seen = _notices(ib)
    assert len(daily(ib, tws_simulator, "AAPL")) == 5
    assert seen == [(-1, code) for code in (2103, 2105, 2157, 2104, 2106, 2158, 2107)]
    assert len(daily(ib, tws_simulator, "AAPL")) == 5 and len(seen) == 7  # a count of 1: once


def test_faults_from_the_configuration_and_unknown_fault_names(
    tws_simulator_factory, ib_client_factory
) -> None:
    simulator = tws_simulator_factory(faults={"BHP": {"no_permission": True}})
    ib = ib_client_factory(simulator)
    ib.RaiseRequestErrors = True
    assert error_code(ib, simulator, "BHP") == 354
    with pytest.raises(UnknownFault, match="known:"):
        simulator.faults.set("BHP", no_permision=True)


def test_a_snapshot_shows_market_properties_as_they_were_given(tws_simulator) -> None:
    halt = {"date": "2025-06-25", "from": "11:00", "to": "13:30"}
    tws_simulator.faults.set("AAPL", halts=halt, duplicate_bar=2)
    assert tws_simulator.faults.snapshot() == {"AAPL": {"halts": halt, "duplicate_bar": 2}}
    tws_simulator.faults.clear("AAPL", "halts")
    assert tws_simulator.faults.snapshot() == {"AAPL": {"duplicate_bar": 2}}
    assert tws_simulator.faults.properties("AAPL").halts == ()


def test_each_switch_counts_how_often_it_fired_and_a_count_runs_down_to_zero(tws_simulator, ib) -> None:
    tws_simulator.faults.set("AAPL", no_data=2, farm_notices=True)
    tws_simulator.faults.set("MSFT", never_answer=1)
    assert error_code(ib, tws_simulator, "AAPL") == 162
    assert error_code(ib, tws_simulator, "AAPL") == 162
    assert len(daily(ib, tws_simulator, "AAPL")) == 5  # the count is spent: answered
    assert tws_simulator.faults.fired() == {"no_data": 2, "farm_notices": 3}
    # The residue a campaign reads: a spent count is 0, a switch left on stays True, an unused one stays.
    assert tws_simulator.faults.snapshot() == {
        "AAPL": {"no_data": 0, "farm_notices": True},
        "MSFT": {"never_answer": 1},
    }
    tws_simulator.faults.reset_fired()
    assert tws_simulator.faults.fired() == {}
