"""Which product code a benchmark section measured, so ``render`` can mark a section gone stale.

A section records the git tree hash of each product path and a digest of its uncommitted changes;
it is stale when either differs from the working tree's now. See docs/benchmarks.md#stale-sections.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

#: What the Airflow sections measure: the product, its DAGs and plugin, the pool, the pinned packages,
#: and the simulator that stands in for IB.
PRODUCT_PATHS = (
    "include/ibkr_market_data",
    "dags",
    "plugins",
    "pools.json",
    "requirements.txt",
    "include/tws_simulator",
)
#: Per section, when it measures less than the whole product.
SECTION_PATHS: dict[str, tuple[str, ...]] = {
    "sim": ("include/tws_simulator",),
    "first_run": (*PRODUCT_PATHS, "include/ibkr_market_data_dev", "Makefile"),
}


def paths_of(section: str) -> tuple[str, ...]:
    """Return the paths whose code ``section`` measures."""
    return SECTION_PATHS.get(section, PRODUCT_PATHS)


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return result.stdout.rstrip("\n")  # a status line starts with a space: keep it


def snapshot(paths: Sequence[str], root: Path = REPO_ROOT) -> dict[str, Any]:
    """Return the commit, each path's tree (or blob) hash at HEAD, and the uncommitted changes to them.

    ``uncommitted`` lists the changed or untracked files; ``uncommitted_digest`` is a hash of their
    diff and contents, so the same edits compare equal.
    """
    trees = {path: _git(root, "rev-parse", "-q", "--verify", f"HEAD:{path}") or None for path in paths}
    status = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    lines = [line for line in status.splitlines() if line.strip()]
    changed = sorted(line[3:] for line in lines)
    digest = hashlib.sha256(_git(root, "diff", "HEAD", "--", *paths).encode())
    for name in sorted(line[3:] for line in lines if line.startswith("??")):
        file = root / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes())
    return {
        "commit": _git(root, "rev-parse", "--short", "HEAD") or "unknown",
        "trees": trees,
        "uncommitted": changed,
        "uncommitted_digest": digest.hexdigest()[:16] if changed else None,
    }


def stale_reasons(measured: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """Return why a section measured on ``measured`` no longer measures ``current``; empty when fresh.

    A section with no recorded trees (measured before they were recorded) is stale.
    """
    if not measured or "trees" not in measured:
        return ["the code it measured was not recorded (measured before bench/code_state.py)"]
    reasons = [
        f"{path} changed since it was measured"
        for path, tree in current["trees"].items()
        if measured["trees"].get(path) != tree
    ]
    if measured.get("uncommitted_digest") != current.get("uncommitted_digest"):
        reasons.append("uncommitted changes differ from those it measured")
    return reasons


def describe(state: Mapping[str, Any]) -> str:
    """Return a state as one line: the commit, and the files changed beside it."""
    changed = state.get("uncommitted") or []
    return (
        f"{state['commit']} + uncommitted changes to {', '.join(changed)}"
        if changed
        else str(state["commit"])
    )
