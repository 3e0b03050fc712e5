"""Tools for running the collector on one machine: never imported by the product or its image.

The local stack (``local_stack``), the local commands (``local_cli``) and their defaults
(``local_env``), Airflow as a managed process (``airflow_stack``). See docs/development.md.
"""
