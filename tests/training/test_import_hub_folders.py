"""timm models from your own weights get their own data config; Hugging Face hub folders import as they are.

Hub folders are written by timm's own `save_for_hf` (config.json with architecture,
num_classes, label_names and pretrained_cfg, beside model.safetensors), as
`push_to_hf_hub` uploads them; the offline hub cache is filled as the hub lays it out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import timm
import timm.data
import torch
from timm.models._hub import save_for_hf

from lambda_src.artifact import Manifest, Preprocessing
from model_training.cli import main
from tests.support.imported_models import HUB_COMMIT, full_decode, photos, served_input, use_hub_cache

LABELS = ["cat", "dog", "fox"]
NAME = "mobilenetv3_small_050"
DATA_CONFIG = {
    "input_size": (3, 160, 160),
    "crop_pct": 0.95,
    "interpolation": "bilinear",
    "mean": (0.5,) * 3,
    "std": (0.5,) * 3,
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(4)
    return timm.create_model(NAME, pretrained=False, num_classes=len(LABELS)).eval()


def _manifest(folder: Path) -> Manifest:
    return Manifest.from_json((folder / "manifest.json").read_bytes())


def test_your_own_timm_weights_get_the_architectures_data_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: torch.nn.Module
) -> None:
    torch.save(model.state_dict(), tmp_path / "w.pth")
    (tmp_path / "labels.txt").write_text("\n".join(LABELS))
    common = [
        "import",
        "--weights",
        str(tmp_path / "w.pth"),
        "--architecture",
        f"timm:{NAME}",
        "--labels",
        str(tmp_path / "labels.txt"),
    ]

    assert run(capsys, *common, "--output", str(tmp_path / "default"))[0] == 0
    assert run(capsys, *common, "--output", str(tmp_path / "160"), "--image-size", "160")[0] == 0

    config = timm.data.resolve_model_data_config(model)  # lamb_in1k: bicubic, crop_pct 0.875
    assert _manifest(tmp_path / "default").preprocessing == Preprocessing(
        resize=256,
        crop=224,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=config["interpolation"],
    )
    assert config["interpolation"] == "bicubic"
    assert _manifest(tmp_path / "160").preprocessing.resize == 182  # timm's floor(160 / 0.875)


def _check_against_timm(manifest: Manifest, model: torch.nn.Module, pretrained_cfg: dict) -> None:
    """Serving's input and the model's answer equal timm's own eval transform's, on a real photo."""
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, pretrained_cfg=pretrained_cfg))
    data = photos()["hopper-full.png"]
    reference = transform(full_decode(data))
    assert torch.allclose(served_input(manifest, data), reference, atol=1e-6)


def test_a_hub_folder_imports_with_its_labels_and_preprocessing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: torch.nn.Module
) -> None:
    folder = tmp_path / "pets-mobilenet"
    save_for_hf(
        model,
        str(folder),
        model_config={"label_names": LABELS},
        data_config=DATA_CONFIG,
        safe_serialization=True,
    )

    code, _, err = run(capsys, "import", "--weights", str(folder), "--output", str(tmp_path / "out"))

    assert code == 0, err
    manifest = _manifest(tmp_path / "out")
    assert manifest.architecture == f"timm:{NAME}" and manifest.labels == tuple(LABELS)
    assert manifest.model_name == "pets-mobilenet"
    assert manifest.preprocessing == Preprocessing(
        resize=168, crop=160, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear"
    )
    _check_against_timm(manifest, model, {**model.pretrained_cfg, **DATA_CONFIG})
    written = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert all(torch.equal(written[key], value) for key, value in model.state_dict().items())


def test_a_hub_repository_imports_from_the_offline_cache(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    model: torch.nn.Module,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snapshot = tmp_path / "hub" / "models--someone--pets-mobilenet" / "snapshots" / HUB_COMMIT
    save_for_hf(
        model,
        str(snapshot),
        model_config={"label_names": LABELS},
        data_config=DATA_CONFIG,
        safe_serialization=True,
    )
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(HUB_COMMIT)
    use_hub_cache(monkeypatch, tmp_path / "hub")

    code, _, err = run(
        capsys, "import", "--pretrained", "hf-hub:someone/pets-mobilenet", "--output", str(tmp_path / "out")
    )

    assert code == 0, err
    manifest = _manifest(tmp_path / "out")
    assert manifest.provenance is not None and manifest.provenance.kind == "timm"
    assert manifest.provenance.name == "hf-hub:someone/pets-mobilenet"
    assert manifest.labels == tuple(LABELS) and manifest.preprocessing.crop == 160


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no config.json", "is a folder without config.json: give a Hugging Face hub folder of a timm model"),
        ("no labels", "config.json lists no label_names: give the labels with --labels FILE"),
        ("no weights", "holds config.json but none of model.safetensors, pytorch_model.bin"),
        (
            "an exported program",
            "is a torch.export program; it is not imported, because torch.export.load unpickles",
        ),
    ],
)
def test_unusable_folders_are_refused_in_one_line_with_nothing_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: torch.nn.Module, case: str, words: str
) -> None:
    folder = tmp_path / "folder"
    save_for_hf(
        model,
        str(folder),
        model_config={} if case == "no labels" else {"label_names": LABELS},
        safe_serialization=True,
    )
    target = folder
    if case == "no config.json":
        (folder / "config.json").unlink()
    elif case == "no weights":
        (folder / "model.safetensors").unlink()
    elif case == "an exported program":
        shutil.copy(folder / "model.safetensors", tmp_path / "model.pt2")
        target = tmp_path / "model.pt2"
    extra = (
        ["--architecture", f"timm:{NAME}", "--labels", str(tmp_path / "l.txt")]
        if case == "an exported program"
        else []
    )
    (tmp_path / "l.txt").write_text("\n".join(LABELS))

    code, out, err = run(
        capsys, "import", "--weights", str(target), *extra, "--output", str(tmp_path / "out")
    )

    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "out").exists()
