"""Fault campaign: break IB, PostgreSQL or Airflow during real daily runs and check what survives.

The design and the scenarios: docs/fault-campaign.md; the results: campaign/results.md.
"""
