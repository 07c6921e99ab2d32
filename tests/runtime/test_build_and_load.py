"""Serving builds the network on the meta device and assigns the weights: same outputs, no random init."""

from __future__ import annotations

import io
from collections.abc import Mapping

import pytest
import torch

from lambda_src.architectures import build_and_load, build_model, load_weights


def _round_trip(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict as serving reads it: saved, then torch.load(weights_only=True) on the CPU."""
    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    loaded: dict[str, torch.Tensor] = torch.load(
        io.BytesIO(buffer.getvalue()), weights_only=True, map_location="cpu"
    )
    return loaded


def _published(architecture: str) -> dict[str, torch.Tensor]:
    return _round_trip(build_model(architecture, 3).state_dict())


def _copied(architecture: str, state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The ordinary path: a randomly initialised network the weights are copied into."""
    model = build_model(architecture, 3)
    load_weights(model, state_dict, architecture)
    return model.eval()


def _logits(model: torch.nn.Module, size: int) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)))


def _holds_the_state_dicts_tensors(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> bool:
    return all(tensor.data_ptr() == state_dict[key].data_ptr() for key, tensor in model.state_dict().items())


def _nothing_on_meta(model: torch.nn.Module) -> bool:
    return not any(tensor.is_meta for tensor in [*model.parameters(), *model.buffers()])


@pytest.mark.parametrize(
    ("architecture", "assigned", "size"),
    [
        ("resnet18", True, 96),
        ("mobilenet_v3_small", True, 96),
        ("efficientnet_b0", True, 96),
        ("googlenet", True, 96),  # built with aux_logits/init_weights turned off
        ("inception_v3", True, 96),
        ("timm:resnet18.a1_in1k", True, 96),
        # Non-persistent buffers (relative position indices) the state dict does not hold.
        ("timm:test_vit_relpos", False, 160),
        # Its init reads values (`.item()`), which meta tensors do not have.
        ("regnet_y_400mf", False, 96),
    ],
)
def test_outputs_are_bit_identical_to_copying_into_a_built_network(
    architecture: str, assigned: bool, size: int
) -> None:
    state_dict = _published(architecture)

    served = build_and_load(architecture, 3, state_dict, architecture).eval()

    assert _nothing_on_meta(served)
    # True: built on meta, the weights assigned; False: the ordinary build, the weights copied.
    assert _holds_the_state_dicts_tensors(served, state_dict) is assigned
    assert torch.equal(_logits(served, size), _logits(_copied(architecture, state_dict), size))


def test_a_float16_checkpoint_is_served_in_float32_as_copying_does() -> None:
    half = {
        key: tensor.half() if tensor.is_floating_point() else tensor
        for key, tensor in _published("resnet18").items()
    }

    served = build_and_load("resnet18", 3, _round_trip(half), "resnet18").eval()

    assert {tensor.dtype for tensor in served.parameters()} == {torch.float32}
    assert torch.equal(_logits(served, 64), _logits(_copied("resnet18", half), 64))


def test_strided_shared_and_over_sized_tensors_become_compact_parameters_of_their_own() -> None:
    state_dict = _published("resnet18")
    weight = state_dict["fc.weight"]
    state_dict["fc.weight"] = weight.t().contiguous().t()  # same values, transposed strides
    bias = state_dict["fc.bias"]
    state_dict["fc.bias"] = torch.cat([bias, torch.ones(1000)])[
        : bias.numel()
    ]  # a view into a larger storage
    state_dict["bn1.bias"] = state_dict["bn1.weight"]  # two keys, one tensor
    state_dict = _round_trip(state_dict)  # torch.save keeps the strides, the whole storage and the sharing
    assert not state_dict["fc.weight"].is_contiguous()
    assert state_dict["fc.bias"].untyped_storage().nbytes() > state_dict["fc.bias"].nbytes

    assert state_dict["bn1.bias"].data_ptr() == state_dict["bn1.weight"].data_ptr()

    served = build_and_load("resnet18", 3, state_dict, "resnet18").eval()

    tensors = [*served.parameters(), *served.buffers()]
    for tensor in tensors:
        assert tensor.is_contiguous()
        assert tensor.untyped_storage().nbytes() == tensor.nbytes
    assert len({tensor.untyped_storage().data_ptr() for tensor in tensors}) == len(tensors)
    assert torch.equal(_logits(served, 64), _logits(_copied("resnet18", state_dict), 64))
