"""``bench/results.md`` is a rendering of ``bench/results.json`` and nothing else."""

import json
from pathlib import Path

from bench.render import markdown

BENCH = Path(__file__).resolve().parents[3] / "bench"


def test_the_committed_markdown_renders_from_the_committed_figures() -> None:
    results = json.loads((BENCH / "results.json").read_text())
    assert "daily" in results["sections"]
    assert markdown(results) == (BENCH / "results.md").read_text()


def test_a_section_whose_product_code_changed_is_marked_stale() -> None:
    measured = {"commit": "aaa", "trees": {"dags": "1", "pools.json": "2"}, "uncommitted_digest": None}
    section = {"measured_at": "2026-12-06 16:00 UTC", "seconds": 4.0, "code": "aaa", "code_state": measured}
    results = {
        "machine": {key: "x" for key in ("nproc", "cpu", "memory_gib", "python", "airflow")}
        | {"providers_postgres": "x", "ib_insync": "x", "platform": "x"},
        "sections": {"backfill": {**section, "figures": {"bars": 1}}},
        "code_now": {"backfill": measured},
    }
    assert "Stale" not in markdown(results)
    results["code_now"] = {"backfill": {**measured, "trees": {"dags": "9", "pools.json": "2"}}}
    assert "**Stale**: dags changed since it was measured." in markdown(results)
