"""Task bodies: plain functions of params and run identity that the DAG files wire together."""
