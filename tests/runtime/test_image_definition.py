"""The container image definition: lean, complete, and pointing at the real handler.

There is no Docker engine here, so these tests read the Dockerfile and .dockerignore
the way the builder would: instructions in order, COPY sources resolved against the
build context (lambda_src/) after .dockerignore filtering.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTEXT = REPO_ROOT / "lambda_src"
TASK_ROOT = "${LAMBDA_TASK_ROOT}"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined."""
    text = (CONTEXT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    result = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, arguments = stripped.partition(" ")
            result.append((keyword.upper(), arguments.strip()))
    return result


def dockerignore_patterns() -> list[str]:
    lines = (CONTEXT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    # A pattern that matches a directory excludes everything below it.
    return re.compile("".join(parts) + "(/.*)?")


def is_ignored(relative_path: str) -> bool:
    """Whether Docker leaves this context path out (last matching pattern wins, `!` re-includes)."""
    ignored = False
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        if _pattern_regex(pattern.removeprefix("!").strip("/")).fullmatch(relative_path):
            ignored = not negated
    return ignored


def test_base_image_is_the_lambda_python_image_pinned_to_a_dated_tag() -> None:
    arguments = dict(arg.split("=", 1) for kind, arg in instructions() if kind == "ARG" and "=" in arg)
    base = arguments["BASE_IMAGE"]
    assert re.fullmatch(r"public\.ecr\.aws/lambda/python:3\.1[2-9]\.\d{4}\.\d{2}\.\d{2}\.\d{2}", base), base
    assert ("FROM", "${BASE_IMAGE}") in instructions()


def test_torch_comes_from_the_cpu_index_pinned_like_the_dev_environment_before_any_code() -> None:
    steps = instructions()
    torch_step = next(i for i, (kind, arg) in enumerate(steps) if kind == "RUN" and "torch==" in arg)
    command = steps[torch_step][1]
    assert "--index-url https://download.pytorch.org/whl/cpu" in command
    pins = dict(
        re.findall(r"^(torch|torchvision)==(\S+)", (REPO_ROOT / "requirements-dev.txt").read_text(), re.M)
    )
    assert f"torch=={pins['torch']}" in command
    assert f"torchvision=={pins['torchvision']}" in command
    first_copy = next(i for i, (kind, _) in enumerate(steps) if kind == "COPY")
    assert torch_step < first_copy, "torch must be installed before any COPY so code changes reuse its layer"
    code_copy = next(i for i, (kind, arg) in enumerate(steps) if kind == "COPY" and "*.py" in arg)
    assert code_copy > next(
        i for i, (kind, arg) in enumerate(steps) if kind == "RUN" and "requirements.txt" in arg
    )


def test_image_requirements_hold_no_torch_training_or_cdk_dependencies() -> None:
    lines = (CONTEXT / "requirements.txt").read_text().splitlines()
    names = {re.split(r"[=<>\[ ]", line)[0].lower() for line in lines if line and not line.startswith("#")}
    assert names == {"pillow", "aws-lambda-powertools"}


def test_every_copy_source_exists_in_the_context_and_survives_dockerignore() -> None:
    copies = [arg.split() for kind, arg in instructions() if kind == "COPY"]
    assert copies
    for *sources, destination in copies:
        assert destination.startswith(f"{TASK_ROOT}/lambda_src/"), destination
        for source in sources:
            matches = [path for path in CONTEXT.glob(source) if path.is_file()]
            assert matches, f"COPY {source}: nothing in the build context matches"
            for path in matches:
                assert not is_ignored(path.relative_to(CONTEXT).as_posix()), f"{path} is dockerignored"


def test_cmd_names_the_real_handler_function_in_the_package_the_image_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cmd = next(arg for kind, arg in instructions() if kind == "CMD")
    (target,) = json.loads(cmd)
    module_name, _, function_name = target.rpartition(".")
    assert module_name.split(".")[0] == "lambda_src"  # the COPY destination folder's name
    # Importing the handler loads the model from the environment: make sure it names none.
    for name in ("MODEL_STORE", "MODEL_NAME", "MODEL_VERSION"):
        monkeypatch.delenv(name, raising=False)
    function = getattr(importlib.import_module(module_name), function_name)
    assert callable(function)
    assert list(inspect.signature(function).parameters) == ["event", "context"]


def test_dockerignore_keeps_tests_caches_models_and_data_out_and_the_runtime_in() -> None:
    for excluded in (
        "tests/test_handler.py",
        "__pycache__/handler.cpython-312.pyc",
        "model.pt",
        "weights.pth",
        "data/train/cat.jpg",
        ".model-store/demo/LATEST",
        "cdk.out/manifest.json",
        ".venv/bin/python",
        "notes.md",
    ):
        assert is_ignored(excluded), excluded
    for module in CONTEXT.glob("*.py"):
        assert not is_ignored(module.name), module.name
    assert not is_ignored("requirements.txt")


def test_runtime_is_flat_and_imports_nothing_outside_the_image() -> None:
    """The image copies lambda_src/*.py only: no subpackages, no imports of repo-only packages."""
    assert not [path for path in CONTEXT.iterdir() if path.is_dir() and path.name != "__pycache__"]
    forbidden = {"aws_cdk", "constructs", "cdk_nag", "model_training", "stacks", "local_endpoint", "tests"}
    for module in CONTEXT.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{module.name} imports {roots & forbidden}"
