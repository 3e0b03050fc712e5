"""The market-data dashboard mounted in Airflow's UI (see ``app``). See docs/operations.md."""
