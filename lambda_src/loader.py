"""The `load` verb: resolve the version, verify the artifact, build the model, warm it up.

Every way an artifact can be unusable ends in a `ModelArtifactError` whose message
a person can act on (which object, what is wrong), never a tensor traceback.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch.fx.experimental.optimization import fuse

from lambda_src.architectures import build_and_load, check_architecture
from lambda_src.artifact import (
    WEIGHTS_FILE,
    Manifest,
    sha256_hex,
    weights_key,
)
from lambda_src.cpus import available_cpus
from lambda_src.deadlines import Deadline
from lambda_src.errors import (
    ArchitectureMismatch,
    IntegrityError,
    ModelArtifactError,
    NonFiniteOutputs,
)
from lambda_src.model_store import (
    LOAD_READ_BOUND_S,
    BoundedStore,
    ModelLocation,
    ModelStore,
    check_digest,
    check_size,
    open_store,
    read_manifest,
    resolve_version,
)
from lambda_src.timing import PhaseTimer

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A verified model in eval mode, ready to serve, and what it took to load it."""

    manifest: Manifest
    network: torch.nn.Module
    torch_threads: int
    phases_ms: dict[str, float] = field(default_factory=dict)


def load_model(
    location: ModelLocation,
    *,
    torch_threads: int = 0,
    store: ModelStore | None = None,
    read_bound_s: float = LOAD_READ_BOUND_S,
) -> LoadedModel:
    """Read, verify, build and warm up the model at `location` (threads: 0 = all available CPUs).

    Its reads, all together, give up after `read_bound_s`, whatever the store does.
    """
    timer = PhaseTimer()
    with timer.phase("open_store"):
        opened = store if store is not None else _open_store(location.store_uri)
        store = BoundedStore(opened, Deadline(read_bound_s))
    with timer.phase("resolve_version"):
        version = resolve_version(store, location.model_name, location.version)
    with timer.phase("read_manifest"):
        manifest = read_manifest(store, location.model_name, version)
        check_architecture(manifest.architecture)  # before downloading weights it could not use
    weights_location = store.describe(weights_key(store.prefix, location.model_name, version))
    with timer.phase("read_weights"):
        # The manifest's size: a replaced or truncated model.pt is refused before it is read.
        weights = store.read(
            weights_key(store.prefix, location.model_name, version), size=manifest.weights_size_bytes
        )
    with timer.phase("verify_weights"):
        verify_weights(weights, manifest, weights_location)
    with timer.phase("read_state_dict"):
        state_dict = read_state_dict(weights, weights_location)
    with timer.phase("build_and_load"):
        network = build_and_load(
            manifest.architecture,
            manifest.num_classes,
            state_dict,
            f"{manifest.architecture} with the manifest's {manifest.num_classes} classes",
            head=manifest.head,
            input_conv=manifest.input_conv,
        )
        network.eval()
    # The network now owns the state dict's tensors (built on the meta device, they were
    # assigned, not copied): free the bytes before optimising makes new tensors.
    del weights, state_dict
    with timer.phase("optimise"):
        network = optimise_for_inference(network)
    threads = configure_threads(torch_threads)
    with timer.phase("warm_up"):
        warm_up(network, manifest.preprocessing.crop, manifest.preprocessing.channels)
    return LoadedModel(
        manifest=manifest,
        network=network,
        torch_threads=threads,
        phases_ms=timer.rounded(),
    )


def _open_store(store_uri: str) -> ModelStore:
    try:
        return open_store(store_uri)
    except ValueError as error:  # a store URI no reader understands
        raise ModelArtifactError(str(error)) from None


def verify_weights(weights: bytes, manifest: Manifest, description: str) -> None:
    """Raise IntegrityError unless the weights have the size and SHA-256 the manifest records."""
    check_size(description, len(weights), manifest.weights_size_bytes, WEIGHTS_FILE)
    check_digest(
        description,
        sha256_hex(weights),
        manifest.weights_sha256,
        why="the weights are corrupt or were replaced",
    )


def read_state_dict(weights: bytes, description: str) -> Mapping[str, torch.Tensor]:
    """Deserialize a state dict without executing pickled code (tensors and plain containers only)."""
    try:
        state_dict = torch.load(io.BytesIO(weights), weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises many types here; each means the same thing
        raise IntegrityError(f"{description} is not a loadable state dict: {_first_line(error)}") from None
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state_dict.items()
    ):
        raise IntegrityError(
            f"{description} holds a {type(state_dict).__name__}, "
            "not a state dict (a mapping of names to tensors)"
        )
    return state_dict


def non_finite_tensors(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity (publishing refuses those)."""
    return [
        name
        for name, tensor in state_dict.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def optimise_for_inference(network: torch.nn.Module) -> torch.nn.Module:
    """The eval-mode network made cheaper to run on CPU, with the same outputs (to float rounding).

    Batch norms are folded into the convolutions before them, when torch.fx can trace the
    architecture; then the network goes to channels-last memory format, which oneDNN's CPU
    convolutions run faster (inputs stay NCHW: the first convolution converts them).
    Both measured by `python -m bench`.
    """
    try:
        traced = torch.fx.symbolic_trace(network)
    except Exception as error:  # an architecture fx cannot trace is served unfused, only a little slower
        _log.warning("serving the network without folded batch norms: %s", _first_line(error))
    else:
        # In place: a copy of the network would cost more init time than the folding itself.
        network = fuse(traced, inplace=True, no_trace=True)
    return network.to(memory_format=torch.channels_last)


def configure_threads(requested: int) -> int:
    """Set torch's intra-op threads (0 = the CPUs this process really has); return the count."""
    threads = requested if requested > 0 else available_cpus()
    torch.set_num_threads(threads)
    return threads


def warm_up(network: torch.nn.Module, crop: int, channels: int = 3) -> None:
    """One forward pass, so the first request does not pay for lazy initialisation.

    It also proves the architecture runs on the manifest's crop size (some need a minimum),
    and that its outputs are numbers: weights holding NaN or infinity would answer every
    request with scores no JSON can carry.
    """
    try:
        with torch.inference_mode():
            outputs = network(torch.zeros(1, channels, crop, crop))
    except RuntimeError as error:
        raise ArchitectureMismatch(
            f"the model cannot run on the manifest's {crop}x{crop} input: {_first_line(error)}"
        ) from None
    if not torch.isfinite(outputs).all():
        raise NonFiniteOutputs()


def _first_line(error: BaseException) -> str:
    """The first line of an error's message (torch's run on for paragraphs), or its type."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
