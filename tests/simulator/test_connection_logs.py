"""The simulator logs each client's connect and disconnect at DEBUG: a daily run makes hundreds of them."""

from __future__ import annotations

import logging

import pytest


def test_a_clients_connect_and_disconnect_are_logged_at_debug_only(
    tws_simulator, ib_client_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tws_simulator")
    ib = ib_client_factory(tws_simulator, client_id=7)
    ib.disconnect()
    assert tws_simulator.request_log.wait_until(lambda _: 7 not in tws_simulator.connected_client_ids())
    tws_simulator.stop()  # the disconnect's log line is written once the simulator's loop has stopped

    lines = [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if record.name.startswith("tws_simulator") and record.getMessage().startswith("Client 7 ")
    ]
    assert lines == [
        (logging.DEBUG, "Client 7 connected (server version 176)"),
        (logging.DEBUG, "Client 7 disconnected"),
    ]
