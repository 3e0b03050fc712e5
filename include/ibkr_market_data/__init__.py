"""Daily market-data collection from Interactive Brokers into PostgreSQL, for Apache Airflow.

See docs/architecture.md.
"""
