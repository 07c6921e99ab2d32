"""What a user's weights change in the registry's network: a custom classifier head, a 1-channel stem.

Fine-tuning tutorials replace the head with `nn.Sequential(nn.Dropout(p), nn.Linear(...))`;
grayscale models (medical, documents) rebuild the first convolution for 1 channel. Both
show in the weights: the head's tensors sit under `fc.1.` instead of `fc.`, the first
convolution's weight has 1 input channel. They are read from the weights where that is
unambiguous (Dropout and Linear layers only); a head with activations is described with
`--head` (e.g. `linear-relu-dropout-linear`), since an activation holds no weights.
The result is recorded in the manifest, so serving builds exactly the trained module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from lambda_src.architectures import meta_model
from lambda_src.artifact import HEAD_LAYER_KINDS, Head, HeadLayer

_LAYER_TENSOR = re.compile(r"^(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


class HeadError(Exception):
    """The weights' head cannot be read or does not match `--head`, for a reason a person can act on."""


@dataclass(frozen=True)
class NetworkFit:
    """The changes to the registry's network the weights need (None: the registry's own)."""

    head: Head | None = None
    input_conv: str | None = None


def fit_network(
    architecture: str, num_classes: int, state_dict: Mapping[str, torch.Tensor], *, head: str | None = None
) -> NetworkFit:
    """The head and 1-channel stem `state_dict` implies for `architecture`; `head` describes the head."""
    base = meta_model(architecture, num_classes)
    return NetworkFit(
        head=_fit_head(base, state_dict, head),
        input_conv=_one_channel_input(base, state_dict),
    )


def _one_channel_input(base: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first convolution when the weights give it 1 input channel instead of 3."""
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3 and module.groups == 1:
            weight = state_dict.get(f"{name}.weight")
            one_channel = (module.out_channels, 1, *module.kernel_size)
            return name if weight is not None and tuple(weight.shape) == one_channel else None
    return None


def _fit_head(base: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], spec: str | None) -> Head | None:
    expected = base.state_dict()
    # The registry's classifier: a Linear layer whose own tensors the weights do not hold.
    candidates = [
        name
        for name, module in base.named_modules()
        if isinstance(module, torch.nn.Linear) and f"{name}.weight" not in state_dict
    ]
    layers: dict[int, dict[str, torch.Tensor]] = {}
    module = ""
    for name in candidates:
        under = {
            key.removeprefix(f"{name}."): value
            for key, value in state_dict.items()
            if key.startswith(f"{name}.") and key not in expected
        }
        parsed = [(_LAYER_TENSOR.match(key), value) for key, value in under.items()]
        if under and all(match for match, _ in parsed):
            module = name
            for match, value in parsed:
                assert match is not None
                layers.setdefault(int(match.group(1)), {})[match.group(2)] = value
            break
    if not module:
        if spec is not None:
            raise HeadError(
                f"--head {spec}: the weights hold no Sequential head in place of the architecture's "
                "classifier "
                f"({', '.join(candidates) or 'its own head is there'}); leave --head out"
            )
        return None
    count = max(layers) + 1
    kinds = _parse_spec(spec, module, count) if spec is not None else _infer_kinds(module, layers, count)
    return Head(
        module=module,
        layers=tuple(_layer(module, index, kind, layers.get(index, {})) for index, kind in enumerate(kinds)),
    )


def _parse_spec(spec: str, module: str, count: int) -> list[str]:
    kinds = [kind.strip().lower() for kind in spec.split("-")]
    unknown = [kind for kind in kinds if kind not in HEAD_LAYER_KINDS]
    if unknown:
        raise HeadError(
            f"--head {spec}: unknown layer {unknown[0]!r}; layers are {', '.join(HEAD_LAYER_KINDS)}"
        )
    if len(kinds) < count:
        raise HeadError(
            f"--head {spec} describes {len(kinds)} layers, "
            f"but the weights' head {module} holds layer {count - 1}"
        )
    return kinds


def _infer_kinds(module: str, layers: Mapping[int, Mapping[str, torch.Tensor]], count: int) -> list[str]:
    """Dropout before Linear layers, read from the weights; anything else needs `--head`."""
    weighted = sorted(layers)
    others = [index for index in range(count) if index not in layers and index > weighted[0]]
    if others or any(
        set(layers[index]) != {"weight", "bias"} or layers[index]["weight"].dim() != 2 for index in weighted
    ):
        shown = ", ".join(f"{module}.{index}" for index in weighted)
        raise HeadError(
            f"the weights' head {module} is a Sequential of {count} layers (with weights: {shown}); "
            "the layers "
            "between or after them hold no weights, so what they are cannot be read: describe the head with "
            "--head, e.g. --head dropout-linear-relu-dropout-linear"
        )
    return ["dropout" if index not in layers else "linear" for index in range(count)]


def _layer(module: str, index: int, kind: str, tensors: Mapping[str, torch.Tensor]) -> HeadLayer:
    """The head layer `kind` at `index`, sized from its tensors; HeadError if they do not fit the kind."""
    where = f"{module}.{index}"
    held = ", ".join(sorted(tensors)) or "no tensors"
    weight = tensors.get("weight")
    if kind == "linear":
        if weight is None or weight.dim() != 2 or "bias" not in tensors:
            raise HeadError(f"--head says {where} is linear, but the weights hold {held} there")
        return HeadLayer("linear", in_features=weight.shape[1], out_features=weight.shape[0])
    if kind in ("batchnorm", "layernorm"):
        statistics = "running_mean" in tensors
        if weight is None or weight.dim() != 1 or statistics != (kind == "batchnorm"):
            raise HeadError(f"--head says {where} is {kind}, but the weights hold {held} there")
        return HeadLayer(kind, in_features=weight.shape[0], out_features=weight.shape[0])
    if tensors:
        raise HeadError(
            f"--head says {where} is {kind}, which holds no weights, but the weights hold {held} there"
        )
    return HeadLayer(kind)
