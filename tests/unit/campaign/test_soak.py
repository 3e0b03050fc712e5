"""The soak draws the same faults from the same seed, and its report shows every difference."""

from __future__ import annotations

import random

from campaign.scenarios import SCENARIOS
from campaign.soak import DateResult, SoakReport, draw, markdown


def draws(seed: int, days: int = 20) -> list[str]:
    rng = random.Random(seed)
    return [draw(rng, list(SCENARIOS), last=day == days - 1).name for day in range(days)]


def test_the_same_seed_draws_the_same_faults_and_the_last_date_draws_none() -> None:
    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert draws(7)[-1] == SCENARIOS[0].name == "baseline: no fault"
    assert len(set(draws(7))) > 5  # drawn from the whole catalogue


def result(date: str, fault: str, fired_ok: bool = True, lost: int = 0) -> DateResult:
    return DateResult(
        date, fault, "fired 2×", fired_ok, "success", 1, lost, 0, 0, 0, 0, 0, "its own run", 30.0
    )


def test_the_report_names_the_seed_and_every_difference_and_an_unfired_fault() -> None:
    report = SoakReport(
        seed=4242,
        days=2,
        symbols=["AAPL", "BHP"],
        workload="daily bars for all",
        executor="local",
        measured_at="2026-12-06 12:00 UTC",
        code="abc123",
        dates=[
            result("2025-03-03", "corrupt bars", lost=3),
            result("2025-03-04", "pacing storm", fired_ok=False),
        ],
        bars_compared=1200,
        differences=["AAPL 1min 2025-03-03 14:31: missing"],
    )
    text = markdown(report)
    assert "seed **4242**" in text and "make soak DAYS=2 SEED=4242" in text
    assert "differences (bars missing, different, not served, no-data where IB has bars): **1**" in text
    assert "AAPL 1min 2025-03-03 14:31: missing" in text
    assert "**NOT FIRED**" in text
    assert "| corrupt bars | 1 | 1 of 1 | 1 | 3 |" in text
