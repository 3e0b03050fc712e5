import pytest

from ibkr_market_data.pacing import PacingRules, SentRequest, minimum_duration, seconds_until_allowed

RULES = PacingRules(safety_margin=0.0)


def sent(contract, request, at):
    return SentRequest(contract, request, at)


def test_nothing_sent_means_no_wait():
    assert seconds_until_allowed(RULES, [], "AAPL", "AAPL|a", 100.0) == 0


def test_identical_request_waits_fifteen_seconds():
    history = [sent("AAPL", "AAPL|a", 100.0)]
    assert seconds_until_allowed(RULES, history, "AAPL", "AAPL|a", 105.0) == pytest.approx(10.0)
    assert seconds_until_allowed(RULES, history, "MSFT", "MSFT|a", 105.0) == 0


def test_sixth_request_for_a_contract_within_two_seconds_waits():
    history = [sent("AAPL", f"AAPL|{i}", 100.0 + i * 0.1) for i in range(5)]
    assert seconds_until_allowed(RULES, history, "AAPL", "AAPL|new", 100.5) == pytest.approx(1.5)
    assert seconds_until_allowed(RULES, history[1:], "AAPL", "AAPL|new", 100.5) == 0


def test_sixty_first_request_in_ten_minutes_waits_for_the_oldest_to_age_out():
    history = [sent(f"S{i}", f"S{i}|r", 100.0 + i) for i in range(60)]
    assert seconds_until_allowed(RULES, history, "X", "X|r", 200.0) == pytest.approx(500.0)


def test_minimum_duration_is_free_for_daily_bars_and_windowed_for_small_ones():
    assert minimum_duration(300, small_bars=False, in_flight=16, latency=0.2) == pytest.approx(19 * 0.2)
    assert minimum_duration(300, small_bars=True, in_flight=16, latency=0.2) == pytest.approx(4 * 600)


def test_safety_margin_is_added_to_every_real_wait():
    rules = PacingRules(safety_margin=0.25)
    history = [sent("AAPL", "AAPL|a", 100.0)]
    assert seconds_until_allowed(rules, history, "AAPL", "AAPL|a", 105.0) == pytest.approx(10.25)
    assert seconds_until_allowed(rules, history, "MSFT", "MSFT|a", 105.0) == 0
