"""reqContractDetails through the real client, for an ASX and a NASDAQ symbol."""

from __future__ import annotations

import pytest
from ib_insync import Contract, RequestError, Stock


@pytest.mark.parametrize(
    ("symbol", "exchange", "currency", "primary", "time_zone"),
    [("BHP", "ASX", "AUD", "ASX", "Australia/NSW"), ("AAPL", "SMART", "USD", "NASDAQ", "US/Eastern")],
)
def test_contract_details_of_asx_and_nasdaq_symbols(
    tws_simulator, ib_client_factory, symbol, exchange, currency, primary, time_zone
) -> None:
    ib = ib_client_factory(tws_simulator)
    expected = tws_simulator.model.contract(symbol)
    [details] = ib.reqContractDetails(Stock(symbol, exchange, currency))
    contract = details.contract
    assert (contract.symbol, contract.secType, contract.conId) == (symbol, "STK", expected.con_id)
    assert (contract.exchange, contract.primaryExchange, contract.currency) == (exchange, primary, currency)
    assert details.timeZoneId == time_zone
    assert details.longName == expected.long_name
    assert details.minTick == float(expected.min_tick)
    assert [r.outcome for r in tws_simulator.request_log.contract_details(symbol=symbol)] == ["details:1"]


def test_lookup_by_con_id_and_qualify_contracts(tws_simulator, ib_client_factory) -> None:
    ib = ib_client_factory(tws_simulator)
    brk = tws_simulator.model.contract("BRK A")
    [details] = ib.reqContractDetails(Contract(conId=brk.con_id))
    assert (details.contract.symbol, details.contract.primaryExchange) == ("BRK A", "NYSE")
    [qualified] = ib.qualifyContracts(Stock("GGP", "ASX", "AUD"))
    assert qualified.conId == tws_simulator.model.contract("GGP").con_id


def test_unknown_symbol_gets_error_200(tws_simulator, ib_client_factory) -> None:
    ib = ib_client_factory(tws_simulator)
    ib.RaiseRequestErrors = True
    with pytest.raises(RequestError) as raised:
        ib.reqContractDetails(Stock("NOPE", "SMART", "USD"))
    assert raised.value.code == 200
    with pytest.raises(RequestError):  # the right symbol in the wrong currency is no match either
        ib.reqContractDetails(Stock("BHP", "ASX", "USD"))
    assert tws_simulator.request_log.outcomes("contract_details") == ["error:200", "error:200"]
