"""A TWS / IB Gateway simulator that the unmodified ib_insync client talks to over TCP.

- :mod:`~ibkr_market_data.simulator.server`: :class:`SimulatorConfig`, :class:`TwsSimulator`
- :mod:`~ibkr_market_data.simulator.testing`: :class:`SimulatorThread` (own thread and loop)
- :mod:`~ibkr_market_data.simulator.market`: :class:`MarketModel`, deterministic bars
- :mod:`~ibkr_market_data.simulator.history`: what a historical request means (durations, ends)
- :mod:`~ibkr_market_data.simulator.rules`: IB's pacing and connection limits
- :mod:`~ibkr_market_data.simulator.faults`: faults on demand
- :mod:`~ibkr_market_data.simulator.request_log`: every request and its outcome
- :mod:`~ibkr_market_data.simulator.protocol`, :mod:`~ibkr_market_data.simulator.messages`,
  :mod:`~ibkr_market_data.simulator.connection`: the wire
- ``python -m ibkr_market_data.simulator``: the command line (see ``__main__``)
- :mod:`~ibkr_market_data.simulator.bench`: throughput measurement

Importing this package is cheap; the model loads the calendars when a simulator is built.
"""
