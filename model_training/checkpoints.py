"""Weights files as training tools write them, read without running pickled code.

A file may hold a bare state dict, or a checkpoint dict keeping it beside training
state: torchvision's reference scripts (`model`, `model_ema`, `optimizer`, `args`...),
timm's `train.py` (`state_dict`, `state_dict_ema`, `arch`, `args`, `metric`...),
PyTorch Lightning (`state_dict` with the LightningModule's attribute prefix beside
`hyper_parameters`), the PyTorch tutorial's `model_state_dict`, the article's `net`.
`args` is an `argparse.Namespace`: `torch.load(weights_only=True)` loads it through
torch's own allowlist (`torch.serialization.safe_globals`), which here holds only
classes that carry data and no code. Anything else a pickle names is refused.

Wrapper prefixes (`module.` of DDP, `_orig_mod.` of torch.compile, a Lightning
attribute, in any order and combination) are found by matching the architecture's
own parameter names, not from a fixed list.
"""

from __future__ import annotations

import argparse
import pathlib
import pickle
import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy._core.multiarray import scalar as _numpy_scalar

# Classes that hold plain data and run no code of their own when unpickled. torch's
# allowlist already covers tensors, dicts, lists, tuples, sets, numbers and strings.
SAFE_GLOBALS: tuple[Any, ...] = (
    argparse.Namespace,  # `args` of torchvision's reference scripts and timm's train.py
    pathlib.PurePosixPath,
    pathlib.PosixPath,
    pathlib.PureWindowsPath,
    pathlib.WindowsPath,
    # numpy scalars (a metric computed with numpy): a dtype and raw bytes; numpy 1 names its module
    # numpy.core, numpy 2 numpy._core
    np.dtype,
    _numpy_scalar,
    (_numpy_scalar, "numpy.core.multiarray.scalar"),
    *(type(np.dtype(kind)) for kind in ("bool", "int32", "int64", "float16", "float32", "float64")),
)
# Where checkpoints keep the model's weights, most common first; and their EMA copies.
WEIGHTS_KEYS = ("state_dict", "model", "model_state_dict", "net")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict", "ema")
# How torch.load(weights_only=True) names the Python object it will not unpickle.
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class CheckpointError(Exception):
    """The file holds no weights this project can take, for a reason a person can act on."""


@dataclass(frozen=True)
class Checkpoint:
    """The weights a file holds and where in the file they were."""

    state_dict: dict[str, torch.Tensor]
    source: str  # "the file's state dict" or "checkpoint['model_ema']"
    other_weights: tuple[str, ...] = ()  # keys of weights left in the file (EMA or not)


def read_checkpoint(path: Path, *, ema: bool = False) -> Checkpoint:
    """The state dict in `path`: bare, in a training tool's checkpoint, or .safetensors.

    `ema` takes the EMA weights a checkpoint keeps beside the trained ones.
    """
    if path.suffix == ".pt2":
        raise CheckpointError(
            f"{path} is a torch.export program; it is not imported, because torch.export.load unpickles "
            "parts of the archive with full pickle (code from the file would run). Save the state dict "
            "instead: torch.save(model.state_dict(), 'weights.pt')"
        )
    if path.suffix == ".safetensors":
        loaded: Any = read_safetensors(path)
    else:
        loaded = torch_load(path)
    return find_weights(loaded, path, ema=ema)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except OSError:
        raise
    except Exception as error:  # safetensors' own error type for a malformed file
        raise CheckpointError(f"{path} is not a readable .safetensors file: {first_line(error)}") from None


def torch_load(path: Path) -> Any:
    """`torch.load(weights_only=True)` with the code-free classes of SAFE_GLOBALS allowed."""
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, weights_only=True, map_location="cpu")
    except OSError:
        raise
    except Exception as error:  # torch raises many types for files that are not checkpoints
        refused = _REFUSED_GLOBAL.search(str(error)) if isinstance(error, pickle.UnpicklingError) else None
        if refused is None:
            raise CheckpointError(f"{path} is not a PyTorch checkpoint: {first_line(error)}") from None
        raise CheckpointError(
            f"{path} was refused: it names the Python object {refused.group(1)}, and loading it would run "
            "code from the file; only tensors, plain containers and data-only classes such as "
            "argparse.Namespace are loaded. If it is a whole model saved with torch.save(model), load it "
            "where its code is and save the state dict alone: torch.save(model.state_dict(), 'weights.pt')"
        ) from None


def find_weights(loaded: Any, path: Path, *, ema: bool = False) -> Checkpoint:
    """The state dict itself, or the one a checkpoint dict keeps (its EMA copy with `ema`)."""
    if is_state_dict(loaded):
        if ema:
            raise CheckpointError(f"{path} is a bare state dict: it holds no EMA weights for --ema")
        return Checkpoint(dict(loaded), "the file's state dict")
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state dict (names to tensors)")
    trained = [key for key in WEIGHTS_KEYS if is_state_dict(loaded.get(key))]
    averaged = [key for key in EMA_KEYS if is_state_dict(loaded.get(key))]
    chosen = averaged if ema else trained
    if not chosen:
        keys = ", ".join(repr(key) for key in list(loaded)[:10])
        if ema:
            raise CheckpointError(
                f"{path} holds no EMA weights (looked under {', '.join(map(repr, EMA_KEYS))}; "
                f"it has {keys}): import it without --ema"
            )
        hint = f"; its EMA weights ({averaged[0]!r}) are taken with --ema" if averaged else ""
        raise CheckpointError(
            f"{path} holds a dict ({keys}) with no state dict at its top level or under "
            f"{', '.join(repr(key) for key in WEIGHTS_KEYS)}{hint}"
        )
    key = chosen[0]
    others = tuple(other for other in (*trained, *averaged) if other != key)
    return Checkpoint(dict(loaded[key]), f"checkpoint[{key!r}]" + (" (EMA)" if ema else ""), others)


def is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items())
    )


@dataclass(frozen=True)
class FittedKeys:
    """A state dict with the wrapper prefix taken off, and what was left out."""

    state_dict: dict[str, torch.Tensor]
    prefix: str
    left_out: tuple[str, ...]


def fit_keys(
    state_dict: Mapping[str, torch.Tensor],
    expected: Collection[str],
    *,
    strip_prefix: str | None = None,
    prefer_ema: bool = False,
) -> FittedKeys:
    """Take the architecture's tensors out of `state_dict`, whatever wrappers prefixed their names.

    The prefix is the one under which most of the architecture's own parameter names
    appear (`module.`, `_orig_mod.module.`, `model.`, ...); tensors outside it (a
    Lightning module's loss weights, an EMA counter) are left out. `strip_prefix`
    names the prefix instead.
    """
    if strip_prefix is not None:
        if not any(key.startswith(strip_prefix) for key in state_dict):
            starts = sorted({key.split(".")[0] + "." for key in state_dict})[:6]
            raise CheckpointError(
                f"no tensor name starts with --strip-prefix {strip_prefix!r}; they start with "
                + ", ".join(repr(start) for start in starts)
            )
        return _under(state_dict, strip_prefix)
    expected_names = set(expected)
    counts: Counter[str] = Counter()
    for key in state_dict:
        for start in _name_starts(key):
            if key[start:] in expected_names:
                counts[key[:start]] += 1
    if not counts:
        return FittedKeys(dict(state_dict), "", ())  # nothing matches: the fit check will say what differs
    best = max(counts.values())
    tied = sorted(prefix for prefix, count in counts.items() if count == best)
    if len(tied) > 1:
        wanted = [prefix for prefix in tied if ("ema" in prefix.lower()) == prefer_ema]
        if len(wanted) != 1:
            raise CheckpointError(
                "the weights hold the architecture's tensors under several prefixes ("
                + ", ".join(repr(prefix) for prefix in tied)
                + "): choose one with --strip-prefix"
            )
        tied = wanted
    return _under(state_dict, tied[0])


def _name_starts(key: str) -> list[int]:
    """Offsets at which a dotted name's suffixes start: 'a.b.c' -> 0, 2, 4."""
    return [0, *(index + 1 for index, char in enumerate(key) if char == ".")]


def _under(state_dict: Mapping[str, torch.Tensor], prefix: str) -> FittedKeys:
    taken = {key.removeprefix(prefix): value for key, value in state_dict.items() if key.startswith(prefix)}
    left_out = tuple(key for key in state_dict if not key.startswith(prefix))
    return FittedKeys(taken, prefix, left_out)


def non_finite_tensor(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or infinity, if any."""
    for key, tensor in state_dict.items():
        if (
            isinstance(tensor, torch.Tensor)
            and tensor.is_floating_point()
            and not bool(torch.isfinite(tensor).all())
        ):
            return key
    return None


def describe_source(checkpoint: Checkpoint, fitted: FittedKeys) -> str:
    """One line saying which weights were taken, for the command's output."""
    parts = [f"weights: {checkpoint.source}"]
    if fitted.prefix:
        parts.append(f"names under {fitted.prefix!r}")
    if fitted.left_out:
        shown = ", ".join(fitted.left_out[:3]) + (", ..." if len(fitted.left_out) > 3 else "")
        parts.append(f"{len(fitted.left_out)} other tensors left out ({shown})")
    line = "; ".join(parts)
    ema = [key for key in checkpoint.other_weights if key in EMA_KEYS]
    if ema and "(EMA)" not in checkpoint.source:
        line += f" (the file also holds EMA weights, {ema[0]!r}: --ema takes those)"
    return line


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
