"""A TWS / IB Gateway simulator that the unmodified ib_insync client talks to over TCP.

Its own package: it imports nothing from the collector, and is given the instruments to serve.
Importing it is cheap. Its modules: docs/simulator.md#modules.
"""
