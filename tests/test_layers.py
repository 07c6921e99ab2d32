"""Every package imports only the packages below it, and no module imports itself in a circle.

The layers, bottom first (a package may import any package of a lower layer, never one of
its own layer or above):

    0  lambda_src        the container image: contract, artifact, serving (contract imports nothing)
    1  endpoint_client   the torch-free client of a deployment: HTTP, stack outputs, job pricing
       lambda_rehearsal  the image's runtime, rehearsed on this machine
    2  model_training    train, import, publish (to a deployed store: endpoint_client's stack lookup)
    3  local_endpoint    the handler served on this machine, the demo, local batch jobs
    4  bench             measures all of the above

Beside them, `stacks` (the CDK app) imports only the contract and the artifact layout of
lambda_src, and only `app.py` imports `stacks`. Nothing outside `tests` imports `tests`.
Imports inside functions count as much as those at the top: they are dependencies too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lambda_src",),
    ("endpoint_client", "lambda_rehearsal"),
    ("model_training",),
    ("local_endpoint",),
    ("bench",),
)
LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}
STACKS_MAY_IMPORT = {"lambda_src.contract", "lambda_src.artifact"}
PROJECT = {*LAYER_OF, "stacks", "tests", "app"}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project outside `tests`."""
    files = {"app": REPO_ROOT / "app.py"}
    for package in [*LAYER_OF, "stacks"]:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = module_files()


def imported_modules(name: str, path: Path) -> Iterator[str]:
    """The project modules `name` imports, anywhere in its file, as the most precise module name."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for dotted in targets:
            if dotted.split(".")[0] not in PROJECT:
                continue
            module = dotted
            while module not in MODULES and "." in module:  # `from a import name`: the module a
                module = module.rpartition(".")[0]
            yield module


IMPORTS = {name: sorted(set(imported_modules(name, path)) - {name}) for name, path in MODULES.items()}


def package_of(module: str) -> str:
    return module.split(".", maxsplit=1)[0]


def test_every_package_of_the_project_has_its_place() -> None:
    top_level = {
        path.name
        for path in REPO_ROOT.iterdir()
        if (path / "__init__.py").exists() and path.name not in {"tests", "node_modules"}
    }
    assert top_level == {*LAYER_OF, "stacks"}, "give a new package its layer in LAYERS"


@pytest.mark.parametrize("module", sorted(name for name in MODULES if package_of(name) in LAYER_OF))
def test_packages_import_only_the_layers_below_them(module: str) -> None:
    level = LAYER_OF[package_of(module)]
    upward = [
        target
        for target in IMPORTS[module]
        if package_of(target) != package_of(module) and LAYER_OF.get(package_of(target), len(LAYERS)) >= level
    ]
    assert not upward, f"{module} imports {upward}: a layer may only import the layers below it"


def test_the_contract_is_the_bottom() -> None:
    assert IMPORTS["lambda_src.contract"] == []


def test_stacks_take_only_the_contract_and_the_artifact_layout_from_the_runtime() -> None:
    for module in (name for name in MODULES if package_of(name) == "stacks"):
        outside = [target for target in IMPORTS[module] if package_of(target) != "stacks"]
        assert set(outside) <= STACKS_MAY_IMPORT, f"{module} imports {outside}"


def test_only_the_app_imports_the_stacks() -> None:
    importers = {
        module for module, targets in IMPORTS.items() if any(package_of(t) == "stacks" for t in targets)
    }
    assert {package_of(module) for module in importers} <= {"stacks", "app"}, sorted(importers)


def test_no_module_imports_itself_in_a_circle() -> None:
    circles = strongly_connected(IMPORTS)
    assert not circles, f"import circles: {circles}"


def strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every group of more than one module that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root, edges_of_root in graph.items():
        if root in index:
            continue
        work = [(root, iter(edges_of_root))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph.get(target, []))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return groups


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": []}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": ["b"], "b": []}) == []
