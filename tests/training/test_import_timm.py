"""`import --pretrained timm:...`: timm's own loading from its Hugging Face Hub cache, labels and data config.

The weights (random, real shape) are put where the hub keeps downloads, and the hub is
kept offline: timm's real loading code reads them from there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import timm
import timm.data
import torch

from lambda_src.artifact import Manifest
from model_training.cli import main
from model_training.importing import ImportFailed, file_sha256, import_pretrained, timm_preprocessing
from tests.support.imported_models import (
    assert_served_input_matches,
    fill_hub_cache,
    timm_random_state_dict,
    use_hub_cache,
)

NAME = "mobilenetv3_small_050.lamb_in1k"  # 1.6 M parameters: the smallest ImageNet classifier in timm


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("hub")
    fill_hub_cache(cache, f"timm/{NAME}", timm_random_state_dict(NAME))
    return cache


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, hub_cache: Path) -> Path:
    use_hub_cache(monkeypatch, hub_cache)
    return hub_cache


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_timm_model_comes_with_timms_labels_data_config_and_license(
    capsys: pytest.CaptureFixture[str], offline_hub: Path, tmp_path: Path
) -> None:
    code, out, err = run(
        capsys, "import", "--pretrained", f"timm:{NAME}", "--output", str(tmp_path / "out"), "--no-progress"
    )

    assert code == 0, err
    assert f"imported: {NAME} (timm:{NAME}, 1000 classes; resize 256 bicubic, crop 224)" in out
    manifest = Manifest.from_json((tmp_path / "out" / "manifest.json").read_bytes())
    reference = timm.create_model(NAME, pretrained=False)
    config = timm.data.resolve_model_data_config(reference)
    assert manifest.architecture == f"timm:{NAME}"
    assert manifest.labels == tuple(timm.data.ImageNetInfo("imagenet-1k").label_descriptions())
    assert manifest.labels[0] == "tench, Tinca tinca"
    pre = manifest.preprocessing
    assert pre.crop == config["input_size"][-1] == 224
    assert pre.resize == int(224 / config["crop_pct"])  # what timm's eval transform resizes to
    assert (pre.interpolation, pre.mean, pre.std) == (config["interpolation"], config["mean"], config["std"])
    assert manifest.framework["timm"] == timm.__version__
    assert manifest.provenance is not None
    hub_file = next(offline_hub.rglob("model.safetensors"))
    assert (manifest.provenance.kind, manifest.provenance.name) == ("timm", f"timm:{NAME}")
    assert manifest.provenance.license == "apache-2.0"
    assert manifest.provenance.sha256 == file_sha256(hub_file)
    assert manifest.provenance.url
    written = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    expected = timm_random_state_dict(NAME)
    assert all(torch.equal(written[key], expected[key]) for key in expected)


def test_an_untagged_name_resolves_to_timms_default_tag(offline_hub: Path) -> None:
    untagged = NAME.split(".", maxsplit=1)[0]
    assert timm.models.get_pretrained_cfg(untagged).tag == NAME.split(".")[1]

    manifest = import_pretrained(f"timm:{untagged}", progress=False).manifest

    assert manifest.architecture == f"timm:{NAME}"
    assert manifest.model_name == NAME


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("timm:vit_base_patch16_224.mae", "is not a classifier"),
        ("timm:no_such_net", "unknown timm model 'no_such_net'"),
        ("timm:resnet18.no_such_tag", "timm has no pretrained tag 'resnet18.no_such_tag'"),
        ("timm:resnet18.a1_in1k", "timm could not load the pretrained weights"),  # not in the offline cache
    ],
)
def test_models_that_cannot_be_imported_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], offline_hub: Path, tmp_path: Path, spec: str, words: str
) -> None:
    out, store = tmp_path / "out", tmp_path / "store"
    code, _, err = run(
        capsys,
        "import",
        "--pretrained",
        spec,
        "--output",
        str(out),
        "--publish-to",
        str(store),
        "--no-progress",
    )

    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert not out.exists() and not store.exists()


def test_the_served_input_is_what_timms_own_transform_makes(offline_hub: Path) -> None:
    manifest = import_pretrained(f"timm:{NAME}", progress=False).manifest
    model = timm.create_model(NAME, pretrained=False)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))

    assert_served_input_matches(manifest, transform)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"crop_mode": "squash"}, "crop_mode 'squash'; serving reproduces 'center' only"),
        ({"input_size": (3, 224, 448)}, "takes 224x448 inputs; serving crops square images only"),
    ],
)
def test_data_configs_serving_cannot_reproduce_are_refused(change: dict[str, object], words: str) -> None:
    config = {**timm.data.resolve_model_data_config(timm.create_model(NAME, pretrained=False)), **change}

    with pytest.raises(ImportFailed, match=re.escape(words)):
        timm_preprocessing(config, NAME)
