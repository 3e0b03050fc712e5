"""The product package holds what production runs: no simulator, no local-stack tooling.

``ibkr_market_data`` (the provider, installed into the image), ``tws_simulator`` (a distribution of
its own) and ``ibkr_market_data_dev`` (the local stack) live side by side in ``include/``; only the
dev package and the tests may join the other two.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_namespace_packages

REPO = Path(__file__).resolve().parents[2]
INCLUDE = REPO / "include"

_LOADED_AFTER = """
import importlib, importlib.util, json, pkgutil, sys
for package in {packages!r}:
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        if ".migrations" not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)
for path in {files!r}:
    spec = importlib.util.spec_from_file_location("loaded_" + str(abs(hash(path))), path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(packages: list[str], files: list[Path] = ()) -> set[str]:
    """Return every module a fresh interpreter has loaded after importing ``packages`` and ``files``."""
    code = _LOADED_AFTER.format(packages=packages, files=[str(path) for path in files])
    environment = {**os.environ, "PYTHONPATH": str(INCLUDE)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_dags_plugin_provider_and_task_code_load_no_simulator_or_local_stack() -> None:
    loaded = modules_loaded_by(
        ["ibkr_market_data"],
        [*sorted((REPO / "dags").glob("*.py")), *sorted((REPO / "plugins").glob("*.py"))],
    )
    assert "ibkr_market_data.hooks.ibkr" in loaded and "ibkr_market_data.tasks.daily" in loaded
    strays = sorted(
        name for name in loaded if name.split(".")[0] in {"tws_simulator", "ibkr_market_data_dev"}
    )
    assert strays == []


def test_the_simulator_imports_nothing_from_the_collector() -> None:
    loaded = modules_loaded_by(["tws_simulator"])
    assert "tws_simulator.server" in loaded and "tws_simulator.pytest_plugin" in loaded
    assert sorted(name for name in loaded if name.startswith("ibkr_market_data")) == []


def _imports_within(package: str) -> dict[str, set[str]]:
    """Map each module to the modules of ``package`` it imports anywhere (type-checking imports too)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((INCLUDE / package).glob("*.py")):
        name = f"{package}.{path.stem}"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name.startswith(package))
        graph[name] = targets
    return {
        name: {target for target in targets if target in graph} - {name} for name, targets in graph.items()
    }


def test_the_simulator_has_no_import_circle() -> None:
    graph = _imports_within("tws_simulator")
    assert "tws_simulator.connection" in graph["tws_simulator.server"]
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for target in graph[module]:
            visit(target, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_the_provider_distribution_packages_only_the_product() -> None:
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = find_namespace_packages(where=str(REPO / settings["where"][0]), include=settings["include"])
    assert "ibkr_market_data" in packages and "ibkr_market_data.hooks" in packages
    assert [name for name in packages if not name.startswith("ibkr_market_data")] == []
    assert [name for name in packages if name.startswith("ibkr_market_data_dev")] == []
