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


def steady_state_daily() -> dict:
    """Return the committed daily section as a steady-state one: a filled template, its figures."""
    daily = json.loads((BENCH / "results.json").read_text())["sections"]["daily"]["figures"]
    daily["settings"]["steady_state"] = {
        "lookback_sessions": 5,
        "keys": 1_696,
        "bars": 191_000,
        "no_data_sessions": 4,
        "short_sessions": 0,
        "seconds": 14.2,
    }
    per_day = {"symbol_days": 104, "requests": 312, "per_symbol_day": 3.0, "by_bar_size": {"1 min": 1.0}}
    for workload, figures in daily["summary"].items():
        if not isinstance(figures, dict):
            continue
        figures["requests_per_symbol_timeframe"] = {"median": 1.0, "min": 1.0, "max": 1.0, "n": 3}
        figures["intraday_requests_per_symbol_day"] = (
            {"median": 3.0, "min": 3.0, "max": 3.0, "n": 3}
            if workload == "default"
            else {"median": None, "min": None, "max": None, "n": 0}
        )
        figures["intraday_requests"] = per_day if workload == "default" else None
        figures["steady_state_repeats"] = 3
    for pair in daily["runs"]:
        pair["daily"]["postgres_cpu_s"] = 4.0
    return daily


def test_a_steady_state_daily_section_says_so_with_its_requests_per_symbol_day() -> None:
    from bench.render import like_for_like_daily_markdown

    text = "\n".join(like_for_like_daily_markdown(steady_state_daily()))
    assert "**steady state**" in text and "191,000 bars" in text
    assert "| default (as shipped, steady state) |" in text
    assert "| default | 3 of 3 | 1 (1–1) | 3 (3–3) | 1 min 1.00 | 104 |" in text
    assert "the runs' own writes, not counted among them" in text


def test_a_daily_section_on_empty_databases_claims_no_steady_state() -> None:
    """Negative control: the committed section (each repeat on an empty database) is not labelled so."""
    from bench.render import like_for_like_daily_markdown

    daily = steady_state_daily()
    del daily["settings"]["steady_state"]
    text = "\n".join(like_for_like_daily_markdown(daily))
    assert "steady state" not in text
    assert "on a fresh copy of the migrated database with the universe loaded" in text
