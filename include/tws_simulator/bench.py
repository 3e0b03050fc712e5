"""Measure the simulator's throughput: historical requests answered per second.

It speaks the wire protocol itself over raw sockets, since ib_insync throttles itself below what
the server can take. See docs/simulator.md#throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import struct
import time
from collections.abc import Sequence
from typing import Any

from tws_simulator.config import SimulatorConfig
from tws_simulator.protocol import API_MAGIC, encode_frame, encode_raw_frame
from tws_simulator.testing import SimulatorThread
from tws_simulator.universe import Listing, read_listings

#: The market "now" of the in-process simulator: results do not depend on the day it runs.
BENCH_NOW = dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC)
_LENGTH = struct.Struct(">I")


async def _read_message(reader: asyncio.StreamReader) -> list[str]:
    (length,) = _LENGTH.unpack(await reader.readexactly(4))
    return (await reader.readexactly(length)).decode().split("\0")[:-1]


def _historical_request(
    req_id: int, symbol: str, exchange: str, currency: str, bar_size: str, duration: str
) -> bytes:
    contract = ["0", symbol, "STK", "", "0.0", "", "", exchange, "", currency, "", ""]
    fields = ["20", str(req_id), *contract, "0", "", bar_size, duration, "1", "TRADES", "1", "0", ""]
    return encode_frame(fields)


async def _drive_connection(
    host: str,
    port: int,
    client_id: int,
    requests: list[tuple[str, str, str]],
    in_flight: int,
    bar_size: str,
    duration: str,
) -> dict[str, int]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(API_MAGIC + encode_raw_frame("v157..176"))
    await _read_message(reader)  # server version, connection time
    writer.write(encode_frame(["71", "2", str(client_id), ""]))
    seen: set[str] = set()
    while not {"9", "15"} <= seen:
        seen.add((await _read_message(reader))[0])
    counts = {"answered": 0, "bars": 0, "errors": 0}
    next_request = 0
    outstanding = 0
    while counts["answered"] < len(requests):
        batch = []
        while outstanding < in_flight and next_request < len(requests):
            symbol, exchange, currency = requests[next_request]
            next_request += 1
            outstanding += 1
            batch.append(_historical_request(next_request, symbol, exchange, currency, bar_size, duration))
        if batch:
            writer.write(b"".join(batch))
        fields = await _read_message(reader)
        if fields[0] == "17":
            counts["bars"] += int(fields[4])
        elif fields[0] == "4" and fields[2] != "-1":
            counts["errors"] += 1
        else:
            continue
        counts["answered"] += 1
        outstanding -= 1
    writer.close()
    await writer.wait_closed()
    return counts


async def _drive(
    host: str, port: int, plan: list[list[tuple[str, str, str]]], in_flight: int, bar_size: str, duration: str
) -> list[dict[str, int]]:
    return await asyncio.gather(
        *(
            _drive_connection(host, port, 100 + number, requests, in_flight, bar_size, duration)
            for number, requests in enumerate(plan)
        )
    )


def measure_throughput(
    universe: Sequence[Listing],
    *,
    connections: int = 4,
    requests_per_connection: int = 2_500,
    in_flight: int = 10,
    bar_size: str = "1 day",
    duration: str = "5 D",
    host: str | None = None,
    port: int | None = None,
    seed: int = 42,
) -> dict[str, Any]:
    """Send ``connections * requests_per_connection`` historical requests for ``universe``; report requests/s.

    With ``host``/``port`` it measures a simulator that is already running; otherwise it starts one
    in-process. ``in_flight`` (per connection) times ``connections`` should stay at or below 50, IB's
    open-request cap.
    """
    simulator = None
    if host is None or port is None:
        config = SimulatorConfig(seed=seed, clock=lambda: BENCH_NOW, universe=universe)
        simulator = SimulatorThread(config).start()
        host, port = simulator.host, simulator.port
    symbols = itertools.cycle([(listing.symbol, listing.exchange, listing.currency) for listing in universe])
    plan = [[next(symbols) for _ in range(requests_per_connection)] for _ in range(connections)]
    try:
        # A private loop: asyncio.run() would unset the caller's event loop, which ib_insync relies on.
        loop = asyncio.new_event_loop()
        try:
            started = time.perf_counter()
            results = loop.run_until_complete(_drive(host, port, plan, in_flight, bar_size, duration))
            elapsed = time.perf_counter() - started
        finally:
            loop.close()
    finally:
        violations = simulator.violations() if simulator is not None else []
        if simulator is not None:
            simulator.stop()
    answered = sum(result["answered"] for result in results)
    return {
        "connections": connections,
        "in_flight_per_connection": in_flight,
        "bar_size": bar_size,
        "duration": duration,
        "requests": answered,
        "bars": sum(result["bars"] for result in results),
        "errors": sum(result["errors"] for result in results),
        "seconds": round(elapsed, 3),
        "requests_per_second": round(answered / elapsed, 1),
        "rule_violations": len(violations),
    }


def main() -> None:
    """Measure the throughput of the options' simulator and universe; print the figures as JSON."""
    parser = argparse.ArgumentParser(description="Measure the TWS simulator's historical-request throughput")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--requests", type=int, default=2_500, help="per connection")
    parser.add_argument("--in-flight", type=int, default=10, help="pipelined requests per connection")
    parser.add_argument("--bar-size", default="1 day")
    parser.add_argument("--duration", default="5 D")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--universe", nargs="+", required=True, help="CSV files of the symbols to request")
    options = parser.parse_args()
    result = measure_throughput(
        read_listings(options.universe),
        connections=options.connections,
        requests_per_connection=options.requests,
        in_flight=options.in_flight,
        bar_size=options.bar_size,
        duration=options.duration,
        host=options.host,
        port=options.port,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
