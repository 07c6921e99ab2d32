"""Rehearsal fixtures: the image's task root, the function's environment from the synthesized template,
a real model ready to publish, and execution environments started on demand (stopped after each test).

The task root and the stores live in a world-readable folder: the function runs as `nobody`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from lambda_rehearsal.function import Function, build_task_root, make_writable
from lambda_src.contract import API_HANDLER, ENV_MODEL_STORE
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_inference_function import function_properties
from tests.support.silent_store import silent_endpoint
from tests.support.tiny_model import make_manifest, state_dict_bytes, train_tiny_model

MODEL_NAME = "colours"


@dataclass(frozen=True)
class FunctionConfig:
    """What the synthesized template gives the function: its environment and its timeout."""

    environment: dict[str, str]
    timeout_s: float
    memory_mb: int
    snap_start: bool  # Lambda initialises published versions for a snapshot and restores from it


@pytest.fixture(scope="session")
def shared_dir() -> Iterator[Path]:
    """A folder every user can read (pytest's own temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="rehearsal-"))
    folder.chmod(0o755)
    yield folder
    make_writable(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def task_root(shared_dir: Path) -> Path:
    return build_task_root(shared_dir / "task")


@pytest.fixture(scope="session")
def function_config(default_synth: Synthesized) -> FunctionConfig:
    """The function's settings as deployed; only the store, a reference to the bucket, is left out."""
    properties = function_properties(default_synth)
    variables = dict(properties["Environment"]["Variables"])
    # s3://<the bucket's name>/<prefix>: resolved at deploy; each test names its own store.
    assert isinstance(variables.pop(ENV_MODEL_STORE), dict)
    assert all(isinstance(value, str) for value in variables.values()), variables
    return FunctionConfig(
        environment=variables,
        timeout_s=float(properties["Timeout"]),
        memory_mb=int(properties["MemorySize"]),
        snap_start=properties.get("SnapStart") == {"ApplyOn": "PublishedVersions"},
    )


@pytest.fixture(scope="session")
def training_output(shared_dir: Path) -> Path:
    """A folder as `python -m model_training train` leaves it: a real trained model.pt and its manifest."""
    torch.set_num_threads(1)
    weights = state_dict_bytes(train_tiny_model())
    folder = shared_dir / "training-output"
    folder.mkdir()
    (folder / "model.pt").write_bytes(weights)
    (folder / "manifest.json").write_bytes(make_manifest(MODEL_NAME, "v1", weights).to_json())
    return folder


@pytest.fixture
def empty_store(shared_dir: Path, request: pytest.FixtureRequest) -> Path:
    store = shared_dir / f"store-{request.node.name}"
    store.mkdir(mode=0o755)
    return store


StartFunction = Callable[..., Function]


@pytest.fixture
def start_function(
    task_root: Path, function_config: FunctionConfig, shared_dir: Path
) -> Iterator[StartFunction]:
    """start_function(store=..., **environment) -> a running execution environment, init done."""
    started: list[Function] = []

    def start(*, store: Path | str, handler: str = API_HANDLER, **overrides: Any) -> Function:
        work_dir = Path(tempfile.mkdtemp(prefix="function-", dir=shared_dir))
        work_dir.chmod(0o755)
        environment = {
            **function_config.environment,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function_config.memory_mb),
            ENV_MODEL_STORE: str(store),
        }
        environment.update({name: str(value) for name, value in overrides.items()})
        function = Function(
            task_root, environment, work_dir=work_dir, timeout_s=function_config.timeout_s, handler=handler
        )
        started.append(function)
        return function.start()

    yield start
    for function in started:
        function.stop()


@pytest.fixture
def silent_s3_endpoint() -> Iterator[str]:
    with silent_endpoint() as url:
        yield url
