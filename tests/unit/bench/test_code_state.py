"""A section is stale when the product code it measured changed since: trees and uncommitted edits."""

import subprocess

import pytest

from bench.code_state import describe, snapshot, stale_reasons

PATHS = ("product", "pools.json")


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "bench@example.invalid")
    git(tmp_path, "config", "user.name", "bench")
    (tmp_path / "product").mkdir()
    (tmp_path / "product" / "grouping.py").write_text("GROUPS = 16\n")
    (tmp_path / "pools.json").write_text("{}\n")
    (tmp_path / "bench.py").write_text("# not product\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_the_same_code_is_fresh_and_a_bench_only_change_keeps_it_so(repo):
    measured = snapshot(PATHS, repo)
    (repo / "bench.py").write_text("# changed, still not product\n")
    git(repo, "commit", "-qam", "bench only")
    assert stale_reasons(measured, snapshot(PATHS, repo)) == []
    assert measured["uncommitted"] == [] and describe(measured) == measured["commit"]


def test_a_committed_product_change_makes_the_section_stale(repo):
    measured = snapshot(PATHS, repo)
    (repo / "product" / "grouping.py").write_text("GROUPS = 34\n")
    git(repo, "commit", "-qam", "product")
    assert stale_reasons(measured, snapshot(PATHS, repo)) == ["product changed since it was measured"]


def test_uncommitted_product_edits_are_recorded_and_compared(repo):
    clean = snapshot(PATHS, repo)
    (repo / "product" / "grouping.py").write_text("GROUPS = 48\n")
    edited = snapshot(PATHS, repo)
    assert edited["uncommitted"] == ["product/grouping.py"]
    assert "uncommitted changes to product/grouping.py" in describe(edited)
    assert stale_reasons(clean, edited) == ["uncommitted changes differ from those it measured"]
    assert stale_reasons(edited, snapshot(PATHS, repo)) == [], "the same edits: still fresh"
    (repo / "product" / "new.py").write_text("x = 1\n")
    assert stale_reasons(edited, snapshot(PATHS, repo)) == [
        "uncommitted changes differ from those it measured"
    ], "a new file"


def test_a_section_measured_before_trees_were_recorded_is_stale(repo):
    assert stale_reasons(None, snapshot(PATHS, repo))
    assert stale_reasons({"commit": "e57b1c7"}, snapshot(PATHS, repo))
