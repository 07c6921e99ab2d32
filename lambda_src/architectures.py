"""The architecture registry: which classifiers a manifest may name.

Any classification model in `torchvision.models` is accepted, and any timm model as
`timm:NAME` (see `lambda_src.timm_support`); the model is built from code with random
weights and the published state dict is loaded into it, so no pickled code is ever executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import torch
import torchvision

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


def build_model(name: str, num_classes: int) -> torch.nn.Module:
    """A freshly initialised `name` classifier with `num_classes` outputs (no downloads)."""
    check_architecture(name)
    if num_classes < 2:
        raise ArchitectureMismatch(f"a classifier needs at least 2 classes, got {num_classes}")
    if is_timm_architecture(name):
        return build_timm_model(name, num_classes)
    extra = {"aux_logits": False, "init_weights": False} if name in {"inception_v3", "googlenet"} else {}
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra)


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], description: str) -> None:
    """Load `state_dict` into `model`, explaining any mismatch in words, not a shape traceback."""
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
    model.load_state_dict(state_dict, strict=True)
