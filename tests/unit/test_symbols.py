"""How long symbol loading waits out a gateway outage (``symbols.GatewayOutage``)."""

from ibkr_market_data.symbols import RESOLVE_BACKOFF_SECONDS, GatewayOutage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_waited_out_up_to_its_limit_then_each_symbol_gets_one_try():
    clock = Clock()
    outage = GatewayOutage(limit=60, clock=clock)
    assert [outage.failed(tries) for tries in (1, 2, 3, 4, 5)] == [*RESOLVE_BACKOFF_SECONDS, 30.0]
    clock.now += 55
    assert outage.failed(6) == 5.0, "never past the limit"
    clock.now += 5
    assert outage.failed(7) is None
    assert outage.failed(1) is None, "the next symbol: one try, as long as the gateway stays down"


def test_a_success_ends_the_outage_so_the_next_one_is_waited_out_in_full():
    clock = Clock()
    outage = GatewayOutage(limit=60, clock=clock)
    outage.failed(1)
    clock.now += 70
    assert outage.failed(2) is None
    outage.ended()
    clock.now += 1_000
    assert outage.failed(1) == RESOLVE_BACKOFF_SECONDS[0]
