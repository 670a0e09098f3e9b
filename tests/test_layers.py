"""The library's packages follow the data's path, and no import runs back up it: a package imports only those
before it (`LAYERS`), and only the app layer (the `genreclf` command) imports the flows it runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# Lowest first. "core": the modules at genreclf's top level (errors, settings, retry, interrupts, progress).
LAYERS = [
    "core",
    "store",
    "ingest",
    "sources",
    "acquisition",
    "datasets",
    "models",
    "reports",
    "labels",
    "upkeep",
    "app",
]
# A plain config dataclass the settings read from the environment (it imports only genreclf.retry).
CORE_TOO = {"genreclf.sources.youtube_config"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "genreclf" or parts[1:2] in (["flows"], ["tasks"]):  # the flows sit above the library
        return None
    if module in CORE_TOO or len(parts) < 2 or parts[1] not in LAYERS:
        return "core"
    return parts[1]


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every absolute import in the file, at any depth (function-level ones too), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "genreclf" else [node.module]
            found += [(name, node.lineno) for name in names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
    return found


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted((ROOT / "genreclf").rglob("*.py"))


def test_the_packages_are_the_layers() -> None:
    packages = {p.name for p in (ROOT / "genreclf").iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS) - {"core"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module(p))
def test_no_import_runs_back_up_the_data_path(path: Path) -> None:
    module = _module(path)
    mine = LAYERS.index(_layer(module) or "core")
    upward = [
        f"line {line}: {target}"
        for target, line in _imports(path)
        if (layer := _layer(target)) is not None and LAYERS.index(layer) > mine
    ]
    above = (["genreclf", "flows"], ["genreclf", "tasks"])
    runs_flows = [f"line {line}: {t}" for t, line in _imports(path) if t.split(".")[:2] in above]
    assert not upward, f"{module} ({LAYERS[mine]}) imports a later layer: {upward}"
    assert _layer(module) == "app" or not runs_flows, f"{module} imports flows or tasks: {runs_flows}"


def test_the_wheel_holds_every_package_and_no_top_level_flows_or_tasks() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {_module(init) for init in (ROOT / "genreclf").rglob("__init__.py")} | {"genreclf.data"}
    assert listed == on_disk | {"genreclf.flows", "genreclf.tasks"}  # a package left out would be missing
    assert config["package-dir"] == {"genreclf.flows": "flows", "genreclf.tasks": "tasks"}
    assert all(name.startswith("genreclf") for name in listed)


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 450, 80


@pytest.mark.parametrize("folder", ["genreclf", "flows", "tasks"])
def test_modules_and_functions_stay_small_enough_to_read(folder: str) -> None:
    too_long = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function: {too_long}"
