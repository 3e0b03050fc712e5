"""Tools for running the collector on one machine: never imported by the product or its image.

- :mod:`~ibkr_market_data_dev.local_env`: embedded defaults (Airflow home, databases, simulator)
- :mod:`~ibkr_market_data_dev.local_postgres`: the local PostgreSQL server and throwaway databases
- :mod:`~ibkr_market_data_dev.airflow_stack`: ``airflow standalone`` as a managed process
- :mod:`~ibkr_market_data_dev.local_stack`: ``make run``
- :mod:`~ibkr_market_data_dev.local_cli`: ``make collect`` / ``make backfill`` on embedded defaults
- :mod:`~ibkr_market_data_dev.simulated_ib`: the TWS simulator serving the collector's universe
"""
