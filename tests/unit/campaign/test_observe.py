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


def test_bars_built_from_minutes_are_expected_as_the_simulator_s_own_with_their_minutes_wap() -> None:
    """A derived key expects the simulator's 5-minute bars, WAP and trades from the minutes they span."""
    from decimal import Decimal

    from campaign.observe import derived_keys
    from ibkr_market_data.derived import DeriveSettings

    model = MarketModel(shipped_listings(), 42)
    served = ServedMarket(model, FaultPlan())
    session = dt.date(2025, 6, 25)
    keys = {("AAPL", "1min", session), ("AAPL", "5min", session), ("MSFT", "5min", session)}
    building = DeriveSettings(cross_check_percent=Decimal(0))
    assert derived_keys(keys, building) == {("AAPL", "5min", session)}, "MSFT collects no minutes here"
    assert derived_keys(keys, DeriveSettings(cross_check_percent=Decimal(100))) == set()

    expected = served_bars(served, keys, AS_OF, derived_keys(keys, building)).expected.bars
    own = served_bars(served, keys, AS_OF, set()).expected.bars

    built, asked = expected[("AAPL", "5min", session)], own[("AAPL", "5min", session)]
    assert sorted(built) == sorted(asked) and len(built) == 78
    first = min(built)
    minutes = [bar for bar in model.intraday_bars("AAPL", session, 60, True)][:5]
    volume = sum(bar.volume for bar in minutes)
    assert built[first][:5] == asked[first][:5], "prices and volume: the simulator's own bar"
    assert built[first][5] == (sum(bar.wap * bar.volume for bar in minutes) / volume).quantize(
        Decimal("1e-8")
    )
    assert built[first][6] == sum(bar.bar_count for bar in minutes)
    assert built[first][5:] != asked[first][5:], "the simulator's own WAP is not its minutes'"
