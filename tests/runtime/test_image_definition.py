"""The container image definition: lean, complete, and pointing at the real handler.

There is no Docker engine here, so these tests read the Dockerfile and .dockerignore
the way the builder would (lambda_rehearsal/image_build.py).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lambda_rehearsal.image_build import (
    CONTEXT,
    REPO_ROOT,
    build_stages,
    image_pins,
    instructions,
    is_ignored,
    pip_installs,
    requirement_pins,
)
from lambda_src.contract import API_HANDLER

# Where the image runs: Lambda's Linux, the base image's Python.
LAMBDA_PLATFORM = {"platform_system": "Linux", "sys_platform": "linux", "python_version": "3.12", "extra": ""}
CUDA_BUILD_ONLY = ("nvidia-", "cuda-", "triton")


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
    names = set(requirement_pins(CONTEXT / "requirements.txt"))
    assert {"pillow", "aws-lambda-powertools", "numpy", "timm", "safetensors"} <= names
    # (tqdm is in the image: the Hugging Face Hub client timm imports needs it)
    assert not names & {"torch", "torchvision", "matplotlib", "aws-cdk-lib", "constructs", "cdk-nag"}


def test_every_package_is_pinned_and_installed_once_without_its_dependencies() -> None:
    """pip brings nothing the Dockerfile does not name, so every installed version is pinned."""
    installs = pip_installs()
    assert len(installs) == 2  # torch + torchvision from the CPU index; then requirements.txt
    installed: list[str] = []
    for command in installs:
        assert "--no-deps" in command, command
        arguments = command.split()
        for index, argument in enumerate(arguments):
            if argument == "-r":
                installed += requirement_pins(CONTEXT / Path(arguments[index + 1]).name)
            elif "==" in argument:
                assert re.fullmatch(r"[a-z0-9-]+==[\w.]+", argument), argument
                installed.append(argument.split("==")[0])
    assert len(installed) == len(set(installed)), f"installed twice: {installed}"
    assert set(installed) == set(image_pins())


def test_image_pins_are_the_development_environment_versions() -> None:
    """The image runs what the tests run: requirements-dev.txt's pins, installed in the venv."""
    image, development = image_pins(), requirement_pins(REPO_ROOT / "requirements-dev.txt")
    for name in ("torch", "torchvision", "pillow", "aws-lambda-powertools"):
        assert image[name] == development[name], name
    for name, version in image.items():
        installed = importlib.metadata.version(name)
        assert installed.split("+")[0] == version, f"{name}: image {version}, this environment {installed}"


def test_the_image_holds_every_dependency_of_what_it_installs() -> None:
    """Read from the installed packages' metadata (the build's `pip check` proves it again)."""
    pinned = set(image_pins())
    for name in pinned:
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate(LAMBDA_PLATFORM):
                continue  # an extra, or another platform's
            if requirement.name.startswith(CUDA_BUILD_ONLY):
                continue  # this environment has torch's CUDA build; the image's CPU wheel needs none
            assert canonicalize_name(requirement.name) in pinned, f"{name} needs {requirement}"


def test_the_build_stage_trims_strips_and_proves_torch_still_works() -> None:
    stages = build_stages()
    build, final = stages[0], stages[-1]
    build_runs = " ".join(arg for kind, arg in build if kind == "RUN")
    for removed in ("torch/test", "torch/include", "torch/share/cmake"):
        assert removed in build_runs, removed
    assert "! -name torch_shm_manager" in build_runs
    assert "strip --strip-unneeded" in build_runs and "dnf install -y binutils" in build_runs
    # torch's libraries only: strip breaks those auditwheel rewrote in other wheels (numpy's OpenBLAS)
    assert "find torch -type f -name '*.so*' -exec strip" in build_runs
    assert "pip check" in build_runs
    # The final image only copies the finished packages and the code: no tools, no installs.
    assert ("COPY", "--from=packages /opt/packages ${LAMBDA_TASK_ROOT}") in final
    assert not [arg for kind, arg in final if kind == "RUN" and ("pip" in arg or "dnf" in arg)]


def test_torch_and_torchvision_are_a_layer_of_their_own_before_the_other_packages() -> None:
    build, final = build_stages()[0], build_stages()[-1]
    # Installed apart: the torch install names no other package, and nothing else goes where it went
    (torch_install,) = [arg for kind, arg in build if kind == "RUN" and "torch==" in arg]
    assert "--target ${TORCH_PACKAGES}" in torch_install
    assert re.findall(r"\b([\w-]+)==", torch_install) == ["torch", "torchvision"]
    others = [arg for kind, arg in build if kind == "RUN" and "pip install" in arg and arg != torch_install]
    assert others and all("--target ${PACKAGES}" in arg for arg in others)
    # and copied first, each folder one layer: a pin bump elsewhere leaves torch's layer as it was
    copies = [arg for kind, arg in final if kind == "COPY"]
    assert copies[:2] == [
        "--from=packages /opt/torch-packages ${LAMBDA_TASK_ROOT}",
        "--from=packages /opt/packages ${LAMBDA_TASK_ROOT}",
    ]


@pytest.mark.slow
def test_the_build_check_builds_loads_and_runs_a_classifier_here_too() -> None:
    """The Dockerfile's proof step is real code: run it on this environment's torch."""
    (proof,) = [arg for kind, arg in build_stages()[0] if kind == "RUN" and "python -c" in arg]
    code = re.search(r'python -c "(.*)"', proof)
    assert code is not None
    assert all(step in code.group(1) for step in ("torch.load(", "load_state_dict(", "model(batch)"))
    finished = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=180, check=False
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.strip().endswith(" ok")


def test_cmd_names_the_real_handler_function_in_the_package_the_image_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cmd = next(arg for kind, arg in instructions() if kind == "CMD")
    (target,) = json.loads(cmd)
    assert target == API_HANDLER  # what the local endpoint, the rehearsal and the bench run
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
