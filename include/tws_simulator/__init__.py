"""A TWS / IB Gateway simulator that the unmodified ib_insync client talks to over TCP.

Its own package: it imports nothing from the collector, and is given the instruments to serve
(:mod:`~tws_simulator.universe`).

- :mod:`~tws_simulator.config`: :class:`SimulatorConfig`
- :mod:`~tws_simulator.server`: :class:`TwsSimulator`
- :mod:`~tws_simulator.universe`: :class:`Listing`, :func:`read_listings`
- :mod:`~tws_simulator.testing`: :class:`SimulatorThread` (own thread and loop)
- :mod:`~tws_simulator.market`: :class:`MarketModel`, deterministic bars
- :mod:`~tws_simulator.session_index`: each exchange's sessions (``exchange_calendars``)
- :mod:`~tws_simulator.history`: what a historical request means (durations, ends)
- :mod:`~tws_simulator.rules`: IB's pacing and connection limits
- :mod:`~tws_simulator.faults`: faults on demand; :mod:`~tws_simulator.properties`: market properties
- :mod:`~tws_simulator.served`: what IB serves as of a moment (``docs/ib-behaviours.md``)
- :mod:`~tws_simulator.request_log`: every request and its outcome
- :mod:`~tws_simulator.protocol`, :mod:`~tws_simulator.messages`,
  :mod:`~tws_simulator.connection`: the wire
- ``python -m tws_simulator``: the command line (see ``__main__``)
- :mod:`~tws_simulator.bench`: throughput measurement

Importing this package is cheap; the model loads the calendars when a simulator is built.
"""
