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
    installed_pins,
    instructions,
    is_ignored,
    named_stages,
    packages_stage,
    pip_installs,
    requirement_pins,
)
from lambda_src.contract import API_HANDLER, ENV_MODEL_ENGINE, ModelEngine

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


@pytest.mark.parametrize(("engine", "installs"), [(ModelEngine.TORCH, 2), (ModelEngine.ONNXRUNTIME, 1)])
def test_every_package_is_pinned_and_installed_once_without_its_dependencies(
    engine: ModelEngine, installs: int
) -> None:
    """pip brings nothing the Dockerfile does not name, so every installed version is pinned."""
    # torch: torch + torchvision from the CPU index, then requirements.txt; onnxruntime: its own list
    commands = pip_installs(packages_stage(engine))
    assert len(commands) == installs
    installed: list[str] = []
    for command in commands:
        assert "--no-deps" in command, command
        for argument in command.split():
            if "==" in argument:
                assert re.fullmatch(r"[a-z0-9-]+==[\w.]+", argument), argument
        installed += [name for name, _ in installed_pins(command)]
    assert len(installed) == len(set(installed)), f"installed twice: {installed}"
    assert set(installed) == set(image_pins(engine))
    # The build-only export stage installs pinned and --no-deps too
    (export,) = pip_installs("onnx-proof-model")
    assert "--no-deps" in export and installed_pins(export)


@pytest.mark.parametrize("engine", list(ModelEngine))
def test_image_pins_are_the_development_environment_versions(engine: ModelEngine) -> None:
    """The image runs what the tests run: requirements-dev.txt's pins, installed in the venv."""
    image, development = image_pins(engine), requirement_pins(REPO_ROOT / "requirements-dev.txt")
    for name in ("pillow", "aws-lambda-powertools", "numpy"):
        assert image[name] == development[name], name
    for name, version in image.items():
        assert development[name] == version, f"{name}: image {version}, requirements-dev {development[name]}"
        installed = importlib.metadata.version(name)
        assert installed.split("+")[0] == version, f"{name}: image {version}, this environment {installed}"


@pytest.mark.parametrize("engine", list(ModelEngine))
def test_the_image_holds_every_dependency_of_what_it_installs(engine: ModelEngine) -> None:
    """Read from the installed packages' metadata (the build's `pip check` proves it again)."""
    pinned = set(image_pins(engine))
    for name in pinned:
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate(LAMBDA_PLATFORM):
                continue  # an extra, or another platform's
            if requirement.name.startswith(CUDA_BUILD_ONLY):
                continue  # this environment has torch's CUDA build; the image's CPU wheel needs none
            assert canonicalize_name(requirement.name) in pinned, f"{name} needs {requirement}"


def test_the_onnxruntime_image_holds_no_torch_and_the_engine_picks_its_packages() -> None:
    names = set(image_pins(ModelEngine.ONNXRUNTIME))
    assert {"onnxruntime", "numpy", "pillow", "aws-lambda-powertools"} <= names
    assert not names & {"torch", "torchvision", "timm", "onnx", "onnxscript", "sympy"}
    # One packages stage per engine; the ENGINE build argument (default torch) picks it
    stages = named_stages()
    assert {packages_stage(engine) for engine in ModelEngine} <= set(stages)
    arguments = dict(arg.split("=", 1) for kind, arg in instructions() if kind == "ARG" and "=" in arg)
    assert arguments["ENGINE"] == ModelEngine.TORCH
    assert stages["packages"][0] == ("FROM", "${ENGINE}-packages AS packages")
    # and the image serves with the engine it holds unless the function says otherwise
    final = build_stages()[-1]
    assert ("ARG", "ENGINE") in final and ("ENV", f"{ENV_MODEL_ENGINE}=${{ENGINE}}") in final
    onnx_runs = " ".join(
        arg for kind, arg in stages[packages_stage(ModelEngine.ONNXRUNTIME)] if kind == "RUN"
    )
    assert "pip check" in onnx_runs and "find_spec('torch') is None" in onnx_runs


@pytest.mark.slow
def test_the_onnxruntime_build_proof_exports_and_runs_a_model_here_too(tmp_path: Path) -> None:
    """The export stage's and the onnxruntime stage's proof steps are real code: run them here."""
    (export,) = [
        arg for kind, arg in named_stages()["onnx-proof-model"] if kind == "RUN" and "python -c" in arg
    ]
    onnx_stage = named_stages()[packages_stage(ModelEngine.ONNXRUNTIME)]
    (proof,) = [arg for kind, arg in onnx_stage if kind == "RUN" and "python -c" in arg]
    for step in (export, proof):
        match = re.search(r'python -c "(.*)"', step)
        assert match is not None
        code = match.group(1).replace("/opt/proof", str(tmp_path)).replace("/tmp/proof", str(tmp_path))
        code = code.replace(
            "assert importlib.util.find_spec('torch') is None, 'the onnxruntime image holds torch'; ", ""
        )
        finished = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
        )
        assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.strip().endswith(" ok")


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
    for requirements in ("requirements.txt", "requirements-onnxruntime.txt", "requirements-onnx-export.txt"):
        assert not is_ignored(requirements), requirements


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
