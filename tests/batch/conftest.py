"""Batch fixtures: the runtime tests' tiny model, published once to a local folder store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lambda_src.architectures import build_model
from tests.support.tiny_model import LABELS, make_manifest, publish, state_dict_bytes, train_tiny_model

MODEL_NAME = "colours"
VERSION = "v1"
# An untrained squeezenet: its answers mean nothing, but it runs thousands of tiny images in
# seconds, for tests about the flow rather than the answers.
FAST_MODEL_NAME = "fast"
FAST_ARCHITECTURE = "squeezenet1_1"


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The machine is shared: one torch thread, and other test folders get theirs back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local model store: the tiny colour model as `colours` v1, and the `fast` model v1."""
    store = tmp_path_factory.mktemp("store")

    def write(key: str, data: bytes) -> None:
        (store / key).parent.mkdir(parents=True, exist_ok=True)
        (store / key).write_bytes(data)

    tiny = state_dict_bytes(train_tiny_model())
    publish(write, prefix="", model_name=MODEL_NAME, version=VERSION, weights=tiny)
    fast = state_dict_bytes(build_model(FAST_ARCHITECTURE, len(LABELS)))
    manifest = make_manifest(FAST_MODEL_NAME, VERSION, fast, architecture=FAST_ARCHITECTURE)
    publish(write, prefix="", model_name=FAST_MODEL_NAME, version=VERSION, weights=fast, manifest=manifest)
    return store
