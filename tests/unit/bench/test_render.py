"""``bench/results.md`` is a rendering of ``bench/results.json`` and nothing else."""

import json
from pathlib import Path

from bench.render import markdown

BENCH = Path(__file__).resolve().parents[3] / "bench"


def test_the_committed_markdown_renders_from_the_committed_figures() -> None:
    results = json.loads((BENCH / "results.json").read_text())
    assert "daily" in results["sections"]
    assert markdown(results) == (BENCH / "results.md").read_text()
