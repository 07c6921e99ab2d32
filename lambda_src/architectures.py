"""The architecture registry: which classifiers a manifest may name.

Any classification model in `torchvision.models` is accepted, and any timm model as
`timm:NAME` (see `lambda_src.timm_support`); the model is built from code and the published
state dict is loaded into it, so no pickled code is ever executed. Serving builds it without
weights (`build_and_load`); training builds it with random ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import torch
import torchvision
from torch.overrides import TorchFunctionMode

from lambda_src.artifact import Head, HeadLayer
from lambda_src.errors import ArchitectureMismatch
from lambda_src.timm_support import (
    TIMM_PREFIX,
    build_timm_model,
    check_timm_architecture,
    is_timm_architecture,
)

DEFAULT_ARCHITECTURE = "resnet18"


@cache
def classification_architectures() -> tuple[str, ...]:
    """Names of torchvision's image classification models, sorted."""
    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def check_architecture(name: str) -> str:
    """Return `name` if torchvision (or timm, for `timm:NAME`) has such a classifier, else raise."""
    if is_timm_architecture(name):
        return check_timm_architecture(name)
    if name not in classification_architectures():
        known = ", ".join(classification_architectures())
        raise ArchitectureMismatch(
            f"unknown architecture {name!r}; torchvision classifiers are: {known} "
            f"(or any timm model as {TIMM_PREFIX}NAME)"
        )
    return name


def build_model(
    name: str, num_classes: int, *, head: Head | None = None, input_conv: str | None = None
) -> torch.nn.Module:
    """A freshly initialised `name` classifier with `num_classes` outputs (no downloads).

    `head` replaces the registry's classifier head; `input_conv` names the first
    convolution, then built for 1-channel (greyscale) input. Both as a manifest records them.
    """
    check_architecture(name)
    if num_classes < 2:
        raise ArchitectureMismatch(f"a classifier needs at least 2 classes, got {num_classes}")
    if is_timm_architecture(name):
        model = build_timm_model(name, num_classes)
    else:
        extra = {"aux_logits": False, "init_weights": False} if name in {"inception_v3", "googlenet"} else {}
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra)
    if input_conv is not None:
        _replace(model, input_conv, _one_channel(_submodule(model, input_conv, "input_conv")))
    if head is not None:
        _submodule(model, head.module, "head.module")
        _replace(model, head.module, build_head(head))
    return model


def build_head(head: Head) -> torch.nn.Sequential:
    """The Sequential a manifest's head describes (dropout is the identity in eval mode)."""
    makers: dict[str, Callable[[HeadLayer], torch.nn.Module]] = {
        "linear": lambda layer: torch.nn.Linear(layer.in_features, layer.out_features),
        "batchnorm": lambda layer: torch.nn.BatchNorm1d(layer.in_features),
        "layernorm": lambda layer: torch.nn.LayerNorm(layer.in_features),
        "dropout": lambda _: torch.nn.Dropout(),
        "relu": lambda _: torch.nn.ReLU(),
        "gelu": lambda _: torch.nn.GELU(),
        "silu": lambda _: torch.nn.SiLU(),
        "tanh": lambda _: torch.nn.Tanh(),
        "sigmoid": lambda _: torch.nn.Sigmoid(),
        "hardswish": lambda _: torch.nn.Hardswish(),
        "flatten": lambda _: torch.nn.Flatten(),
        "identity": lambda _: torch.nn.Identity(),
    }
    return torch.nn.Sequential(*(makers[layer.kind](layer) for layer in head.layers))


def _submodule(model: torch.nn.Module, path: str, what: str) -> torch.nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise ArchitectureMismatch(
            f"the manifest's {what} {path!r} is not a module of this architecture"
        ) from None


def _replace(model: torch.nn.Module, path: str, module: torch.nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _one_channel(conv: torch.nn.Module) -> torch.nn.Module:
    """`conv`, rebuilt to take 1 input channel (same class, sizes and options otherwise)."""
    if not isinstance(conv, torch.nn.Conv2d) or conv.groups != 1:
        raise ArchitectureMismatch(
            f"the input convolution must be an ungrouped Conv2d, got {type(conv).__name__}"
        )
    return type(conv)(
        1,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )


def meta_model(
    name: str, num_classes: int, *, head: Head | None = None, input_conv: str | None = None
) -> torch.nn.Module:
    """The `name` classifier built on the meta device (no memory, no init): its names and shapes."""
    check_architecture(name)  # imports timm outside the meta context, as build_and_load does
    with torch.device("meta"), _SkipInitialisers():
        return build_model(name, num_classes, head=head, input_conv=input_conv)


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], description: str) -> None:
    """Load `state_dict` into `model`, explaining any mismatch in words, not a shape traceback."""
    check_weights_fit(model, state_dict, description)
    model.load_state_dict(state_dict, strict=True)


def check_weights_fit(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], description: str
) -> None:
    """Raise ArchitectureMismatch naming the missing, unexpected and wrong-shape tensors, if any.

    Only shapes are compared, so `model` may live on the meta device.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [
        f"{key} is {list(state_dict[key].shape)}, expected {list(tensor.shape)}"
        for key, tensor in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(tensor.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (first: {unexpected[0]})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} tensors of the wrong shape (first: {wrong_shape[0]})")
    if problems:
        raise ArchitectureMismatch(f"the weights do not fit {description}: " + "; ".join(problems))


def build_and_load(
    name: str,
    num_classes: int,
    state_dict: Mapping[str, torch.Tensor],
    description: str,
    *,
    head: Head | None = None,
    input_conv: str | None = None,
) -> torch.nn.Module:
    """The `name` classifier holding `state_dict`, built without initialising weights it would overwrite.

    The network is built on the meta device (no memory, no random init) and the state dict's
    tensors become its parameters. A network that cannot be built there, or that keeps state
    the state dict does not hold (non-persistent buffers), is built and loaded the ordinary way.
    """
    check_architecture(name)  # also imports timm, outside the meta context its module code must not see
    changes: dict[str, Any] = {"head": head, "input_conv": input_conv}
    try:
        with torch.device("meta"), _SkipInitialisers():
            model = build_model(name, num_classes, **changes)
    except ArchitectureMismatch:
        raise
    except Exception:  # some init code needs real values (e.g. `.item()`); the ordinary path handles it
        return _build_and_copy(name, num_classes, state_dict, description, **changes)
    check_weights_fit(model, state_dict, description)
    expected = model.state_dict()
    seen: set[int] = set()
    owned = {key: _owned(tensor, expected[key].dtype, seen) for key, tensor in state_dict.items()}
    model.load_state_dict(owned, strict=True, assign=True)
    if _has_meta_tensors(model):
        return _build_and_copy(name, num_classes, state_dict, description, **changes)
    return model


class _SkipInitialisers(TorchFunctionMode):
    """Skips value-only in-place ops (the initialisers' building blocks) on meta tensors.

    A meta tensor has no values, so skipping them changes nothing; running them costs
    `import torch._dynamo` (~0.8 s), which torch's Python decompositions of several of
    them (`normal_`, `erfinv_`, `clamp_`) do on the meta device.
    """

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        target = args[0] if args else (kwargs or {}).get("tensor")  # torch.nn.init passes it by name
        if (
            getattr(func, "__name__", None) in _VALUE_ONLY_IN_PLACE
            and isinstance(target, torch.Tensor)
            and target.is_meta
        ):
            return target
        return func(*args, **(kwargs or {}))


_VALUE_ONLY_IN_PLACE = frozenset(
    {"normal_", "uniform_", "erfinv_", "clamp_", "fill_", "zero_", "mul_", "add_", "sub_", "div_", "copy_"}
)


def _build_and_copy(
    name: str,
    num_classes: int,
    state_dict: Mapping[str, torch.Tensor],
    description: str,
    *,
    head: Head | None = None,
    input_conv: str | None = None,
) -> torch.nn.Module:
    model = build_model(name, num_classes, head=head, input_conv=input_conv)
    load_weights(model, state_dict, description)
    return model


def _owned(tensor: torch.Tensor, dtype: torch.dtype, seen: set[int]) -> torch.Tensor:
    """`tensor` as the module's `dtype`, as a contiguous tensor with a storage of its own.

    What copying into a freshly built module gives: a float16 checkpoint becomes float32,
    and no parameter is a strided view, aliases another or keeps a larger storage alive.
    """
    tensor = tensor.to(dtype)
    storage = tensor.untyped_storage()
    if not tensor.is_contiguous() or storage.nbytes() != tensor.nbytes or storage.data_ptr() in seen:
        tensor = tensor.clone(memory_format=torch.contiguous_format)
    seen.add(tensor.untyped_storage().data_ptr())
    return tensor


def _has_meta_tensors(model: torch.nn.Module) -> bool:
    """Whether any parameter, buffer or plain tensor attribute of `model` is still on the meta device."""
    attributes = (value for module in model.modules() for value in vars(module).values())
    tensors = itertools.chain(model.parameters(), model.buffers(), attributes)
    return any(isinstance(tensor, torch.Tensor) and tensor.is_meta for tensor in tensors)
