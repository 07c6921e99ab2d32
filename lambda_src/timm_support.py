"""timm classifiers in the architecture registry, named `timm:NAME` in manifests.

timm is imported only when such a name is checked or built, so serving a torchvision
model never pays for importing it. NAME may carry a pretrained tag
(`convnext_tiny.fb_in22k_ft_in1k`): the network is built exactly as that tag defines it,
with random weights (nothing is downloaded), and the published state dict loaded into it.
"""

from __future__ import annotations

import types

import torch

from lambda_src.errors import ArchitectureMismatch

TIMM_PREFIX = "timm:"


def is_timm_architecture(architecture: str) -> bool:
    return architecture.startswith(TIMM_PREFIX)


def timm_model_name(architecture: str) -> str:
    """`timm:NAME` -> `NAME`, as timm.create_model takes it."""
    return architecture.removeprefix(TIMM_PREFIX)


def import_timm() -> types.ModuleType:
    """timm, imported without `torch._dynamo` (see lambda_src.lean_imports).

    timm's module-level code asks `torch._dynamo` only for what the stand-ins provide;
    measured: `import timm` after torch and torchvision 1.7 s -> 0.43 s.
    """
    from lambda_src.lean_imports import without_dynamo

    with without_dynamo():
        import timm
        import timm.models
    return timm


def check_timm_architecture(architecture: str) -> str:
    """Return `architecture` if timm knows the model (and its pretrained tag, if any), else raise."""
    timm = import_timm()
    from timm.models import get_pretrained_cfg

    name = timm_model_name(architecture)
    if not timm.is_model(name):
        raise ArchitectureMismatch(
            f"unknown timm model {name!r}; timm.list_models('PATTERN*') lists the models it has"
        )
    if "." in name:
        try:
            get_pretrained_cfg(name)
        except RuntimeError:  # timm's way of saying "no such tag"
            tags = timm.list_pretrained(f"{name.split('.')[0]}.*")
            raise ArchitectureMismatch(
                f"timm has no pretrained tag {name!r}; tags of this model: {', '.join(tags) or 'none'}"
            ) from None
    return architecture


def build_timm_model(architecture: str, num_classes: int) -> torch.nn.Module:
    """A freshly initialised timm classifier with `num_classes` outputs (no downloads)."""
    timm = import_timm()
    check_timm_architecture(architecture)
    return timm.create_model(timm_model_name(architecture), pretrained=False, num_classes=num_classes)
