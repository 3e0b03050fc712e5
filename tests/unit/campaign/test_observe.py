"""campaign.observe: what IB serves for the keys a run planned (docs/fault-campaign.md#what-is-checked)."""

from __future__ import annotations

import datetime as dt
import os
import socket

from campaign.observe import client_ports, established, served_bars
from ibkr_market_data_dev.simulated_ib import shipped_listings
from tws_simulator.faults import FaultPlan
from tws_simulator.market import LISTING_DATES, MarketModel
from tws_simulator.served import ServedMarket

AS_OF = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)


def test_a_session_before_the_symbols_listing_is_served_empty_not_an_error() -> None:
    served = ServedMarket(MarketModel(shipped_listings(), 42), FaultPlan())
    before = LISTING_DATES["GYG"] - dt.timedelta(days=90)  # an ASX session before it listed
    listed = dt.date(2025, 6, 18)
    keys = [("GYG", "1day", before), ("GYG", "5min", before), ("GYG", "1day", listed)]

    result = served_bars(served, keys, AS_OF)

    assert result.expected.bars[("GYG", "1day", before)] == {}
    assert result.expected.bars[("GYG", "5min", before)] == {}
    assert len(result.expected.bars[("GYG", "1day", listed)]) == 1
    assert result.expected.whole == {("GYG", "1day", listed)}
    assert result.changed_by_properties == 0


def test_a_process_s_connections_to_a_server_are_found_and_leave_established_once_closed() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    client_port = client.getsockname()[1]
    try:
        assert client_ports([os.getpid()], port) == {client_port}
        assert established(port, {client_port}) == {client_port}
        client.close()
        assert established(port, {client_port}) == set()
    finally:
        client.close()
        accepted.close()
        server.close()
