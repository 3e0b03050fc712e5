"""Benchmarks behind ``make bench``: figures go to ``bench/results.md`` and ``bench/results.json``.

``python -m bench.run`` (with ``PYTHONPATH=include``) runs every section; ``--only`` picks some.
How each figure is measured: docs/benchmarks.md.
"""
