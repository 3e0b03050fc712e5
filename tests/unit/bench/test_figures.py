"""Goal figures: median with min–max, and no verdict from fewer than three verified repeats."""

import pytest

from bench.figures import MIN_REPEATS, spread, verdict, verdict_text


def test_the_spread_is_the_median_with_its_min_and_max():
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert spread([]) == {"median": None, "min": None, "max": None, "n": 0}


def test_a_goal_is_met_by_the_median_not_by_the_best_repeat():
    assert verdict([1.2, 1.4, 1.5], 1.3, [True] * 3)["met"] is False
    assert verdict([1.1, 1.2, 1.9], 1.3, [True] * 3)["met"] is True
    assert verdict([90_000, 110_000, 120_000], 100_000, [True] * 3, higher_is_better=True)["met"] is True


def test_one_sample_never_decides_a_goal():
    assert MIN_REPEATS == 3
    for values in ([119.3], [119.3, 80.0]):
        result = verdict(values, 120, [True] * len(values))
        assert result["met"] is None
        assert "a verdict needs 3" in result["reason"]
        assert "no verdict" in verdict_text(result, " s")


def test_a_repeat_that_failed_verification_voids_the_verdict():
    result = verdict([1.0, 1.1, 1.2], 1.3, [True, False, True])
    assert result["met"] is None and "1 of 3 repeats failed verification" in result["reason"]
    with pytest.raises(ValueError):
        verdict([1.0], 1.3, [])


def test_the_verdict_line_says_median_range_and_goal():
    text = verdict_text(verdict([1.25, 1.2, 1.4], 1.3, [True] * 3))
    assert text == "1.25 (min–max 1.2–1.4, n=3), goal ≤ 1.3: **met**"
