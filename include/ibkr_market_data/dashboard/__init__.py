"""The market-data dashboard mounted in Airflow's UI (see ``app``)."""
