"""What a simulator lists: universe files, and synthetic listings for scale tests."""

from __future__ import annotations

import pytest

from ibkr_market_data_dev.simulated_ib import shipped_listings
from tws_simulator.universe import SYNTHETIC_CON_ID_BASE, synthetic_listings


def test_synthetic_listings_are_the_same_every_time_and_never_clash() -> None:
    listings = synthetic_listings(3_000)
    assert listings == synthetic_listings(3_000)
    assert listings[:5] == synthetic_listings(5)
    assert len({listing.symbol for listing in listings}) == 3_000
    assert [listing.con_id for listing in listings] == list(
        range(SYNTHETIC_CON_ID_BASE, SYNTHETIC_CON_ID_BASE + 3_000)
    )
    shipped = shipped_listings()
    assert not {listing.symbol for listing in listings} & {listing.symbol for listing in shipped}
    assert not {listing.con_id for listing in listings} & {listing.con_id for listing in shipped}


def test_two_of_three_synthetic_listings_are_us_and_one_is_asx() -> None:
    venues = [(listing.primary_exchange, listing.currency) for listing in synthetic_listings(300)]
    assert (
        venues.count(("NASDAQ", "USD"))
        == venues.count(("NYSE", "USD"))
        == venues.count(("ASX", "AUD"))
        == 100
    )


@pytest.mark.parametrize("count", [-1, 3 * 26**3 + 1])
def test_a_count_out_of_range_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="synthetic listings"):
        synthetic_listings(count)


def test_synthetic_symbols_trade_in_the_simulated_market(tws_simulator_factory) -> None:
    import datetime as dt

    simulator = tws_simulator_factory(universe=shipped_listings() + synthetic_listings(6))
    asx, nyse = synthetic_listings(6)[2], synthetic_listings(6)[1]
    assert len(simulator.model.daily_bars(nyse.symbol, dt.date(2025, 1, 13), dt.date(2025, 1, 17))) == 5
    # Australia Day: the ASX is shut, the US trades.
    assert simulator.model.sessions(asx.symbol, dt.date(2025, 1, 27), dt.date(2025, 1, 27)) == []
    assert simulator.model.sessions(nyse.symbol, dt.date(2025, 1, 27), dt.date(2025, 1, 27)) == [
        dt.date(2025, 1, 27)
    ]
