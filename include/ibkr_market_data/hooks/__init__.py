"""The Airflow hook for TWS / IB Gateway, its connection config and IB link state."""
