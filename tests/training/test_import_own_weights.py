"""`import --weights FILE --architecture NAME --labels FILE`: checkpoints as people have them; refusals."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from lambda_src.architectures import build_model
from lambda_src.artifact import Manifest, Preprocessing
from model_training.cli import main
from model_training.importing import file_sha256, import_weights_file

LABELS = ["cat", "dog", "fox"]
ARCHITECTURE = "mobilenet_v3_small"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """The model a notebook trained (here: random weights) and wants served."""
    torch.manual_seed(1)
    return build_model(ARCHITECTURE, len(LABELS)).eval()


def _save_safetensors(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in state_dict.items()}, str(path))


# How people save weights: file name and what torch.save (or safetensors) was given.
FORMATS: dict[str, tuple[str, Callable[[dict[str, torch.Tensor]], Any]]] = {
    "bare state dict": ("model.pth", lambda sd: sd),
    "checkpoint['state_dict']": ("checkpoint.pt", lambda sd: {"state_dict": sd, "epoch": 7}),
    "checkpoint['model']": ("checkpoint.pt", lambda sd: {"model": sd, "optimizer": {"lr": 0.1}}),
    "the article's {'net': ...}": ("net.pth", lambda sd: {"net": sd}),
    "DataParallel/DDP module. prefix": (
        "ddp.pth",
        lambda sd: {"net": {f"module.{k}": v for k, v in sd.items()}},
    ),
    "safetensors": ("model.safetensors", lambda sd: sd),
}


@pytest.mark.parametrize("kind", list(FORMATS))
@pytest.mark.parametrize("labels_format", ["lines", "json"])
def test_every_checkpoint_format_round_trips_and_predicts_what_the_model_does(
    model: torch.nn.Module, tmp_path: Path, kind: str, labels_format: str
) -> None:
    file_name, wrap = FORMATS[kind]
    weights = tmp_path / file_name
    state_dict = model.state_dict()
    if file_name.endswith(".safetensors"):
        _save_safetensors(state_dict, weights)
    else:
        torch.save(wrap(state_dict), weights)
    labels = tmp_path / "labels.txt"
    labels.write_text(json.dumps(LABELS) if labels_format == "json" else "\n".join(LABELS) + "\n\n")
    preprocessing = Preprocessing(resize=36, crop=32, interpolation="bicubic")

    imported = import_weights_file(ARCHITECTURE, weights, labels, preprocessing)

    assert imported.manifest.labels == tuple(LABELS)
    assert imported.manifest.preprocessing == preprocessing
    assert imported.manifest.provenance is not None
    assert imported.manifest.provenance.kind == "file"
    assert imported.manifest.provenance.name == file_name
    assert imported.manifest.provenance.sha256 == file_sha256(weights)
    assert imported.manifest.model_name == Path(file_name).stem
    inputs = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(imported.model(inputs), model(inputs))
    written = torch.load(io.BytesIO(imported.weights), weights_only=True)
    assert written.keys() == state_dict.keys()
    assert all(torch.equal(written[key], state_dict[key]) for key in state_dict)


def test_a_timm_architecture_takes_your_weights_too(tmp_path: Path) -> None:
    torch.manual_seed(2)
    timm_model = build_model("timm:mobilenetv3_small_050", len(LABELS)).eval()
    weights, labels = tmp_path / "timm.safetensors", tmp_path / "labels.txt"
    _save_safetensors(timm_model.state_dict(), weights)
    labels.write_text("\n".join(LABELS))

    imported = import_weights_file("timm:mobilenetv3_small_050", weights, labels, Preprocessing())

    inputs = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(imported.model(inputs), timm_model(inputs))
    assert imported.manifest.architecture == "timm:mobilenetv3_small_050"


def test_the_cli_writes_and_publishes_the_artifact(
    capsys: pytest.CaptureFixture[str], model: torch.nn.Module, tmp_path: Path
) -> None:
    torch.save({"net": model.state_dict()}, tmp_path / "net.pth")
    (tmp_path / "labels.txt").write_text("\n".join(LABELS))

    code, out, err = run(
        capsys,
        "import",
        "--weights",
        str(tmp_path / "net.pth"),
        "--architecture",
        ARCHITECTURE,
        "--labels",
        str(tmp_path / "labels.txt"),
        "--image-size",
        "160",
        "--interpolation",
        "bicubic",
        "--mean",
        "0.5",
        "0.5",
        "0.5",
        "--std",
        "0.25",
        "0.25",
        "0.25",
        "--model-name",
        "pets",
        "--output",
        str(tmp_path / "out"),
        "--publish-to",
        str(tmp_path / "store"),
    )

    assert code == 0, err
    assert "published: pets v1" in out
    manifest = Manifest.from_json((tmp_path / "store" / "pets" / "v1" / "manifest.json").read_bytes())
    assert manifest.preprocessing == Preprocessing(
        resize=183, crop=160, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), interpolation="bicubic"
    )
    assert (tmp_path / "store" / "pets" / "LATEST").read_text() == "v1"
    assert (tmp_path / "out" / "model.pt").read_bytes() == (tmp_path / "store/pets/v1/model.pt").read_bytes()


class _NotAStateDict(torch.nn.Module):
    """A whole model, as `torch.save(model)` pickles it: weights_only loading refuses its class."""


def _write(tmp_path: Path, case: str, model: torch.nn.Module) -> list[str]:
    """Files for an error case; the CLI arguments that use them."""
    weights, labels = tmp_path / "weights.pth", tmp_path / "labels.txt"
    torch.save(model.state_dict(), weights)
    labels.write_text("\n".join(LABELS))
    architecture = ARCHITECTURE
    if case == "weights of another architecture":
        architecture = "resnet18"
    elif case == "more labels than outputs":
        labels.write_text("\n".join([*LABELS, "owl"]))
    elif case == "a whole pickled model":
        torch.save(_NotAStateDict(), weights)
    elif case == "an empty labels file":
        labels.write_text("\n  \n")
    elif case == "an unknown architecture":
        architecture = "resnet9000"
    elif case == "a dict with no state dict in it":
        torch.save({"epoch": torch.tensor(3), "history": [1.0, 2.0]}, weights)
    elif case == "a file that is not a checkpoint":
        weights.write_bytes(b"not a checkpoint at all")
    return ["--weights", str(weights), "--architecture", architecture, "--labels", str(labels)]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("weights of another architecture", "the weights do not fit resnet18 with 3 classes: "),
        (
            "more labels than outputs",
            "the labels file has 4 labels but the weights' classifier (classifier.3.weight, "
            "classifier.3.bias) has 3 outputs",
        ),
        (
            "a whole pickled model",
            "was refused: it names the Python object training.test_import_own_weights._NotAStateDict",
        ),
        ("an empty labels file", "holds no labels"),
        ("an unknown architecture", "unknown architecture 'resnet9000'"),
        ("a dict with no state dict in it", "no state dict at its top level or under 'state_dict', 'model'"),
        ("a file that is not a checkpoint", "is not a PyTorch checkpoint"),
    ],
)
def test_every_error_is_one_line_exit_1_and_nothing_written(
    capsys: pytest.CaptureFixture[str], model: torch.nn.Module, tmp_path: Path, case: str, words: str
) -> None:
    out, store = tmp_path / "out", tmp_path / "store"
    arguments = _write(tmp_path, case, model)

    code, stdout, err = run(capsys, "import", *arguments, "--output", str(out), "--publish-to", str(store))

    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert stdout == ""
    assert not out.exists() and not store.exists()


def test_the_refusal_of_a_pickled_model_says_how_to_re_save_it(
    capsys: pytest.CaptureFixture[str], model: torch.nn.Module, tmp_path: Path
) -> None:
    arguments = _write(tmp_path, "a whole pickled model", model)

    code, _, err = run(capsys, "import", *arguments, "--output", str(tmp_path / "out"))

    assert code == 1
    assert "torch.save(model.state_dict(), 'weights.pt')" in err
    assert "_NotAStateDict" in err  # what weights_only refused, in torch's words


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["--weights", "w.pth"], "--weights needs --architecture NAME and --labels FILE"),
        (
            ["--pretrained", "timm:x", "--labels", "l.txt"],
            "--architecture, --labels, --ema, --strip-prefix and --head go with --weights",
        ),
    ],
)
def test_incomplete_command_lines_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, arguments: list[str], words: str
) -> None:
    code, _, err = run(capsys, "import", *arguments, "--output", str(tmp_path / "out"))

    assert code == 1 and words in err
    assert not (tmp_path / "out").exists()
