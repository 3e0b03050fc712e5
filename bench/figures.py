"""Goal figures from repeats: the median with its min–max, and a verdict only when it may be given.

A verdict needs at least :data:`MIN_REPEATS` repeats, each of them verified; one sample never
decides a goal. See docs/benchmarks.md#rules.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

#: Repeats a goal's verdict needs: fewer leave it undecided.
MIN_REPEATS = 3


def spread(values: Sequence[float], places: int = 2) -> dict[str, Any]:
    """Return the median of ``values`` with their min, max and count (Nones when there are none)."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(values), places),
        "min": round(min(values), places),
        "max": round(max(values), places),
        "n": len(values),
    }


def verdict(
    values: Sequence[float], goal: float, verified: Sequence[bool], higher_is_better: bool = False
) -> dict[str, Any]:
    """Return whether the median of ``values`` meets ``goal``, or why no verdict is given.

    :param values: one figure per repeat.
    :param goal: the most (or with ``higher_is_better`` the least) the median may be.
    :param verified: per repeat, whether its work was verified; an unverified repeat voids the verdict.
    :return: ``met`` (True, False, or None when undecided), ``reason`` when undecided, and the spread.
    """
    figures = spread(values)
    result: dict[str, Any] = {"goal": goal, "higher_is_better": higher_is_better, **figures}
    if len(verified) != len(values):
        raise ValueError(f"{len(values)} figures but {len(verified)} verification results")
    if not all(verified):
        failed = sum(1 for ok in verified if not ok)
        return {**result, "met": None, "reason": f"{failed} of {len(values)} repeats failed verification"}
    if len(values) < MIN_REPEATS:
        return {**result, "met": None, "reason": f"{len(values)} repeats; a verdict needs {MIN_REPEATS}"}
    median = figures["median"]
    return {**result, "met": median >= goal if higher_is_better else median <= goal}


def verdict_text(result: dict[str, Any], unit: str = "") -> str:
    """Return a verdict as one line: ``median (min–max, n) vs goal: met | not met | no verdict: why``."""
    if result["median"] is None:
        return f"no figure (goal {'≥' if result['higher_is_better'] else '≤'} {result['goal']:g}{unit})"
    figure = f"{result['median']:g}{unit} (min–max {result['min']:g}–{result['max']:g}, n={result['n']})"
    goal = f"goal {'≥' if result['higher_is_better'] else '≤'} {result['goal']:g}{unit}"
    if result["met"] is None:
        return f"{figure}, {goal}: **no verdict** ({result['reason']})"
    return f"{figure}, {goal}: **{'met' if result['met'] else 'not met'}**"
