"""Training tools' checkpoints, as each tool writes them, imported unchanged; unsafe pickles refused.

Each fixture trains a small real model a few steps and saves it the way the tool does:
torchvision's reference scripts (`args` as an argparse.Namespace, an EMA copy from
`AveragedModel`), timm's own `CheckpointSaver` with a `ModelEmaV3`, a LightningModule's
checkpoint layout, a compiled DataParallel model's keys, the PyTorch tutorial's dict.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

from lambda_src.architectures import build_model
from model_training.cli import main

LABELS = ["cat", "dog", "fox"]
ARCHITECTURE = "mobilenet_v3_small"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _trained(
    architecture: str = ARCHITECTURE, steps: int = 2
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A model after a few real optimiser steps (so its weights and an EMA of them differ)."""
    torch.manual_seed(3)
    model = build_model(architecture, len(LABELS))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 0]))
        loss.backward()
        optimiser.step()
    return model.eval(), optimiser


def _outputs(module: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return module.eval()(inputs)


def _import(
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    weights: Path,
    *extra: str,
    architecture: str = ARCHITECTURE,
) -> tuple[int, str, str]:
    """`import --weights` with LABELS, writing to folder/out."""
    folder.mkdir(exist_ok=True)
    labels = folder / "labels.txt"
    labels.write_text("\n".join(LABELS))
    return run(
        capsys,
        "import",
        "--weights",
        str(weights),
        "--architecture",
        architecture,
        "--labels",
        str(labels),
        "--output",
        str(folder / "out"),
        *extra,
    )


def _served_model(tmp_path: Path, architecture: str = ARCHITECTURE) -> torch.nn.Module:
    """The model serving builds from what the import wrote."""
    from lambda_src.loader import load_model
    from lambda_src.model_store import ModelLocation
    from model_training.publishing import publish

    published = publish(tmp_path / "out", str(tmp_path / "store"), progress=False)
    location = ModelLocation(str(tmp_path / "store"), published.model_name, "latest")
    return load_model(location, torch_threads=1).network


def test_a_torchvision_reference_script_checkpoint_imports_its_model_or_its_ema(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model, optimiser = _trained()
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9), use_buffers=True
    )
    ema.update_parameters(model)
    with torch.no_grad():  # the EMA must differ from the model for the test to tell them apart
        for parameter in model.parameters():
            parameter.add_(0.01)
    ema.update_parameters(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=30)
    args = argparse.Namespace(
        model=ARCHITECTURE, lr=0.5, epochs=3, output_dir="out", amp=False, model_ema=True
    )
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimiser.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "epoch": 2,
        "args": args,
        "model_ema": ema.state_dict(),  # module.* keys and an n_averaged counter
    }
    torch.save(checkpoint, tmp_path / "model_2.pth")
    inputs = torch.randn(2, 3, 64, 64)

    code, _, err = _import(capsys, tmp_path, tmp_path / "model_2.pth")
    assert code == 0, err
    assert "weights: checkpoint['model']" in err and "--ema takes those" in err
    assert torch.allclose(_outputs(_served_model(tmp_path), inputs), _outputs(model, inputs), atol=1e-4)

    code, _, err = _import(capsys, tmp_path / "ema", tmp_path / "model_2.pth", "--ema")
    assert code == 0, err
    assert (
        "weights: checkpoint['model_ema'] (EMA); names under 'module.'; 1 other tensors left out (n_averaged)"
        in err
    )
    served = _served_model(tmp_path / "ema")
    assert torch.allclose(_outputs(served, inputs), _outputs(ema.module, inputs), atol=1e-4)
    assert not torch.allclose(_outputs(served, inputs), _outputs(model, inputs), atol=1e-3)


def test_a_timm_train_py_checkpoint_imports_with_its_ema(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from timm.utils import CheckpointSaver, ModelEmaV3

    architecture = "timm:mobilenetv3_small_050"
    model, optimiser = _trained(architecture)
    model_ema = ModelEmaV3(model, decay=0.5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01)
    model_ema.update(model)
    args = argparse.Namespace(model="mobilenetv3_small_050", lr=0.5, epochs=3, output="", model_ema=True)
    saver = CheckpointSaver(model, optimiser, args=args, model_ema=model_ema, checkpoint_dir=str(tmp_path))
    saver.save_checkpoint(epoch=2, metric=71.5)
    inputs = torch.randn(2, 3, 64, 64)

    code, _, err = _import(capsys, tmp_path, tmp_path / "last.pth.tar", "--ema", architecture=architecture)

    assert code == 0, err
    assert "weights: checkpoint['state_dict_ema'] (EMA)" in err
    served = _served_model(tmp_path, architecture)
    assert torch.allclose(_outputs(served, inputs), _outputs(model_ema.module, inputs), atol=1e-4)


def _lightning_checkpoint(state_dict: dict[str, torch.Tensor], optimiser: torch.optim.Optimizer) -> dict:
    """What Lightning's Trainer.save_checkpoint writes for a module holding the network as `self.net`."""
    return {
        "epoch": 4,
        "global_step": 120,
        "pytorch-lightning_version": "2.5.1",
        "state_dict": {
            **{f"net.{key}": value for key, value in state_dict.items()},
            "criterion.weight": torch.ones(len(LABELS)),  # a weighted loss is a module of the LightningModule
        },
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 5, "completed": 4}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_acc', 'mode': 'max'}": {
                "best_model_score": torch.tensor(0.91),
                "best_model_path": "/runs/epoch=4.ckpt",
                "dirpath": "/runs",
            }
        },
        "optimizer_states": [optimiser.state_dict()],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"num_classes": len(LABELS), "lr": 0.5, "backbone": ARCHITECTURE},
    }


def test_a_lightning_checkpoint_imports_the_network_under_its_attribute(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model, optimiser = _trained()
    torch.save(_lightning_checkpoint(model.state_dict(), optimiser), tmp_path / "epoch=4-step=120.ckpt")
    inputs = torch.randn(2, 3, 64, 64)

    code, _, err = _import(capsys, tmp_path, tmp_path / "epoch=4-step=120.ckpt")

    assert code == 0, err
    assert (
        "weights: checkpoint['state_dict']; names under 'net.'; 1 other tensors left out (criterion.weight)"
        in err
    )
    assert torch.allclose(_outputs(_served_model(tmp_path), inputs), _outputs(model, inputs), atol=1e-4)


def test_a_compiled_data_parallel_model_and_the_tutorial_checkpoint_import(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model, optimiser = _trained()
    compiled = torch.compile(torch.nn.DataParallel(model))  # keys: _orig_mod.module.*
    assert next(iter(compiled.state_dict())).startswith("_orig_mod.module.")
    tutorial = {
        "epoch": 2,
        "model_state_dict": compiled.state_dict(),
        "optimizer_state_dict": optimiser.state_dict(),
        "loss": 0.42,
    }
    torch.save(tutorial, tmp_path / "tutorial.pt")
    inputs = torch.randn(2, 3, 64, 64)

    code, _, err = _import(capsys, tmp_path, tmp_path / "tutorial.pt")

    assert code == 0, err
    assert "weights: checkpoint['model_state_dict']; names under '_orig_mod.module.'" in err
    assert torch.allclose(_outputs(_served_model(tmp_path), inputs), _outputs(model, inputs), atol=1e-4)


def test_two_copies_of_the_network_need_strip_prefix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    student, _ = _trained(steps=1)
    teacher, _ = _trained(steps=3)
    state = {f"student.{k}": v for k, v in student.state_dict().items()}
    state |= {f"teacher.{k}": v for k, v in teacher.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "distill.ckpt")
    inputs = torch.randn(2, 3, 64, 64)

    code, out, err = _import(capsys, tmp_path, tmp_path / "distill.ckpt")
    assert code == 1 and out == ""
    assert err == (
        "error: the weights hold the architecture's tensors under several prefixes ('student.', 'teacher.'): "
        "choose one with --strip-prefix\n"
    )
    assert not (tmp_path / "out").exists()

    code, _, err = _import(capsys, tmp_path, tmp_path / "distill.ckpt", "--strip-prefix", "teacher.")
    assert code == 0, err
    assert torch.allclose(_outputs(_served_model(tmp_path), inputs), _outputs(teacher, inputs), atol=1e-4)


class _Payload:
    """A pickle that runs a command when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_naming_what_it_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model, _ = _trained(steps=1)
    marker = tmp_path / "pwned"
    torch.save({"model": model.state_dict(), "args": _Payload(marker)}, tmp_path / "checkpoint.pth")

    code, out, err = _import(
        capsys, tmp_path, tmp_path / "checkpoint.pth", "--publish-to", str(tmp_path / "store")
    )

    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"{tmp_path / 'checkpoint.pth'} was refused: it names the Python object posix.system" in err
    assert "weights_only=False" not in err
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("ema asked, none there", "holds no EMA weights (looked under 'state_dict_ema', 'model_ema'"),
        ("ema of a bare state dict", "is a bare state dict: it holds no EMA weights for --ema"),
        ("unknown prefix", "no tensor name starts with --strip-prefix 'backbone.'; they start with"),
        ("nan weights", "the weights hold NaN or infinity (first in features.0.0.weight)"),
        ("inf weights", "the weights hold NaN or infinity (first in classifier.3.bias)"),
    ],
)
def test_checkpoint_refusals_are_one_line_with_nothing_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, words: str
) -> None:
    model, _ = _trained(steps=1)
    state = model.state_dict()
    extra: list[str] = []
    if case == "ema asked, none there":
        torch.save({"model": state, "epoch": 1}, tmp_path / "w.pth")
        extra = ["--ema"]
    elif case == "ema of a bare state dict":
        torch.save(state, tmp_path / "w.pth")
        extra = ["--ema"]
    elif case == "unknown prefix":
        torch.save(state, tmp_path / "w.pth")
        extra = ["--strip-prefix", "backbone."]
    elif case == "nan weights":
        state["features.0.0.weight"][0, 0, 0, 0] = float("nan")
        torch.save(state, tmp_path / "w.pth")
    else:
        state["classifier.3.bias"][1] = float("inf")
        torch.save(state, tmp_path / "w.pth")

    code, out, err = _import(
        capsys, tmp_path, tmp_path / "w.pth", *extra, "--publish-to", str(tmp_path / "store")
    )

    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()
