"""Serve a simulated TWS on a TCP port until Ctrl-C or SIGTERM: ``python -m tws_simulator``.

Settings come from options or the environment; every fault and market property is in
docs/ib-behaviours.md. A bad setting ends it with one ``error:`` line naming it (exit 2).
See docs/simulator.md#start-it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from tws_simulator.config import SimulatorConfig
from tws_simulator.faults import ALL_SYMBOLS, UnknownFault, validate_settings
from tws_simulator.server import TwsSimulator
from tws_simulator.universe import Listing, read_listings

log = logging.getLogger("tws_simulator")

DEFAULT_PORT = 4002


def _fixed_clock(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"IBKR_SIM_NOW / --now is {text!r}, not an ISO 8601 time") from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def parse_faults(text: str) -> dict[str, dict[str, object]]:
    """Parse faults from JSON: an object mapping a symbol (or ``"*"``) to an object of fault settings."""
    if not text.strip():
        return {}
    try:
        faults = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"IBKR_SIM_FAULTS is not valid JSON: {exc}") from exc
    if not isinstance(faults, dict) or not all(isinstance(value, dict) for value in faults.values()):
        raise ValueError('IBKR_SIM_FAULTS must map symbols to objects, e.g. {"*": {"latency_ms": 200}}')
    for symbol, settings in faults.items():
        try:
            validate_settings(settings, symbol)
        except UnknownFault as exc:
            raise UnknownFault(f"IBKR_SIM_FAULTS for {symbol!r}: {exc}") from None
    return faults


def check_faults_against(faults: Mapping[str, Mapping[str, object]], universe: Sequence[Listing]) -> None:
    """Refuse faults for symbols the universe does not list, and a conId change to a listed conId.

    :raises ValueError: naming the symbols or the conId.
    """
    symbols = {listing.symbol for listing in universe}
    unknown = sorted(set(faults) - symbols - {ALL_SYMBOLS})
    if unknown:
        raise ValueError(f"IBKR_SIM_FAULTS names symbols the universe does not list: {', '.join(unknown)}")
    con_ids = {listing.con_id: listing.symbol for listing in universe}
    for symbol, settings in faults.items():
        change = settings.get("con_id_change")
        if isinstance(change, dict) and change.get("con_id") in con_ids:
            raise ValueError(
                f"IBKR_SIM_FAULTS for {symbol!r}: con_id_change to {change['con_id']}, "
                f"the conId of {con_ids[change['con_id']]}; choose an unused one"
            )


def build_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ
) -> SimulatorConfig:
    """Build the simulator configuration from command-line options, falling back to the environment."""
    parser = argparse.ArgumentParser(prog="python -m tws_simulator", description=__doc__.split("\n")[0])
    # String defaults from the environment go through `type` too, so a bad variable is an argparse error.
    parser.add_argument("--host", default=environ.get("IBKR_SIM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=environ.get("IBKR_SIM_PORT", str(DEFAULT_PORT)))
    parser.add_argument("--seed", type=int, default=environ.get("IBKR_SIM_SEED", "42"))
    parser.add_argument("--faults", default=environ.get("IBKR_SIM_FAULTS", ""))
    parser.add_argument("--now", default=environ.get("IBKR_SIM_NOW", ""))
    parser.add_argument(
        "--universe",
        nargs="+",
        default=[path for path in environ.get("IBKR_SIM_UNIVERSE", "").split(os.pathsep) if path],
        help="CSV files of the instruments to serve",
    )
    parser.add_argument("--log-level", default="INFO")
    options = parser.parse_args(argv)
    if not options.universe:
        parser.error("no universe: give --universe FILE [FILE ...] or IBKR_SIM_UNIVERSE")
    if not 0 <= options.port <= 65535:
        parser.error(f"argument --port: {options.port} is not a TCP port (0-65535)")
    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        faults = parse_faults(options.faults)
        universe = read_listings(options.universe)
        check_faults_against(faults, universe)
        fixed = _fixed_clock(options.now) if options.now else None
    except (ValueError, UnknownFault) as exc:
        parser.error(str(exc))
    config = SimulatorConfig(
        host=options.host, port=options.port, seed=options.seed, faults=faults, universe=universe
    )
    if fixed is not None:
        config.clock = lambda: fixed
    return config


async def serve(config: SimulatorConfig) -> TwsSimulator:
    """Serve until SIGINT or SIGTERM; return the stopped simulator for its report."""
    simulator = TwsSimulator(config)
    await simulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    await stop.wait()
    await simulator.stop()
    return simulator


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until stopped, then print the requests served and the IB rules clients broke."""
    config = build_config(argv)
    simulator = asyncio.run(serve(config))
    violations = simulator.violations()
    print(f"Served {len(simulator.request_log)} requests.")
    if violations:
        print(f"Clients broke IB rules {len(violations)} time(s):")
        for violation in violations:
            print(
                f"  {violation.at:%H:%M:%S} client {violation.client_id} req {violation.req_id}: "
                f"{violation.rule} ({violation.detail})"
            )
    else:
        print("No IB rule was broken.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
