"""The attempt's re-ask after a 162 "no data": its setting, and its pause that holds no in-flight slot."""

import asyncio
import contextlib
import logging

import pytest

from ibkr_market_data.attempt import (
    DEFAULT_NO_DATA_REASK_SECONDS,
    NO_DATA_REASK_VARIABLE,
    _pause,
    no_data_reask_seconds,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("", DEFAULT_NO_DATA_REASK_SECONDS), ("off", None), (" OFF ", None), ("0", 0.0), ("2.5", 2.5)],
)
def test_the_reask_pause_is_read_from_the_environment(value, seconds):
    assert no_data_reask_seconds({NO_DATA_REASK_VARIABLE: value}) == seconds


def test_the_reask_is_on_by_default():
    assert no_data_reask_seconds({}) == DEFAULT_NO_DATA_REASK_SECONDS > 0


@pytest.mark.parametrize("value", ["five", "-1", "601", "nan"])
def test_a_malformed_reask_pause_keeps_the_default_and_names_the_variable(value, caplog):
    with caplog.at_level(logging.WARNING):
        assert no_data_reask_seconds({NO_DATA_REASK_VARIABLE: value}) == DEFAULT_NO_DATA_REASK_SECONDS
    assert NO_DATA_REASK_VARIABLE in caplog.text and repr(value) in caplog.text


def test_the_pause_gives_the_in_flight_slot_to_the_groups_other_symbols_and_takes_it_back():
    async def scenario() -> tuple[bool, bool, bool]:
        slot = asyncio.Semaphore(1)
        await slot.acquire()  # the attempt holds its slot, as in collect_group
        pause = asyncio.ensure_future(_pause(3600, slot))
        await asyncio.sleep(0)  # let the pause begin
        free_while_pausing = not slot.locked()
        async with slot:  # another symbol of the group sends its request meanwhile
            pass
        pause.cancel()  # the pause ends (here by cancelling: the try timed out)
        with contextlib.suppress(asyncio.CancelledError):
            await pause
        return free_while_pausing, slot.locked(), pause.cancelled()

    assert asyncio.run(scenario()) == (True, True, True), "free during the pause, held again after it"
