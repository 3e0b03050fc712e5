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
    # Outside load on one run, whatever the committed figures say: the contention note must show.
    daily["runs"][0]["daily"]["other_processes_cpu_share"] = 0.4
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


def scale_section(steady: bool) -> dict:
    """Return a one-row scale section, its template filled (``steady``) or not."""
    from bench.figures import verdict

    spread = {"median": 633.0, "min": 633.0, "max": 633.0, "n": 1}
    settings = {
        "date": "2025-03-27",
        "repeats": 1,
        "latency_ms": 200,
        "pool_slots": 16,
        "in_flight_total": 48,
    }
    if steady:
        settings["steady_state"] = {
            "lookback_sessions": 5,
            "keys": 2_528,
            "bars": 191_180,
            "no_data_sessions": 4,
            "short_sessions": 0,
            "seconds": 15.1,
        }
    row = {
        "executor": "LocalExecutor",
        "symbols": 320,
        "timeframe": "configured",
        "wall_s": verdict([53.8], 120.0, [True]),
        "task_instances": spread,
        "ib_requests": spread,
        "planned_bars": spread,
        "ib_bound_s": 2.8,
        "cpu_s": spread,
        "peak_pss_mib": spread,
        "verified_repeats": 1,
        "goal_row": False,
    }
    return {
        "settings": settings,
        "universe": {"loaded": 320, "seconds": 7.0},
        "summary": [row],
        "plot": "scale.png",
    }


def test_a_steady_state_scale_section_says_so_with_its_fill() -> None:
    from bench.render import scale_markdown

    text = "\n".join(scale_markdown(scale_section(steady=True)))
    assert "**steady state**" in text and "191,180 bars" in text and "15.1 s" in text
    assert "| configured, steady state |" in text
    assert "its plan asked for no earlier session the template lacked" in text


def test_a_scale_section_on_an_unfilled_template_claims_no_steady_state() -> None:
    """Negative control: a section without the fill's figures is not labelled steady state."""
    from bench.render import scale_markdown

    text = "\n".join(scale_markdown(scale_section(steady=False)))
    assert "steady state" not in text
    assert "each on a fresh copy of a database holding the whole universe;" in text
