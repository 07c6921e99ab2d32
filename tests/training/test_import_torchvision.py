"""`import --pretrained torchvision:...`: torch.hub's real download and cache, hash-checked either way.

The weights are random but of the real shape, served from a local `file://` URL or put
straight into torch.hub's cache (nothing can be downloaded here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from lambda_src.artifact import Manifest
from lambda_src.preprocessing import eval_transform
from model_training.cli import main
from model_training.importing import file_sha256, import_pretrained
from tests.support.imported_models import (
    assert_served_input_matches,
    full_decode,
    photos,
    random_state_dict,
    save_hash_named,
    serve_weights_from,
    use_torch_home,
)

RESNET18 = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
RESNET18_NAME = "resnet18.IMAGENET1K_V1"


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet18's state dict (random, real shape) named as torchvision names it: resnet18-<hash>.pth."""
    return save_hash_named(random_state_dict("resnet18"), tmp_path_factory.mktemp("source"), "resnet18")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, err: str, tmp_path: Path, *words: str) -> None:
    """One `error:` line naming the problem, exit 1, and no output folder or store."""
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "store").exists()


def test_weights_are_downloaded_into_the_cache_checked_and_described(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    resnet18_file: Path,
) -> None:
    cache = use_torch_home(monkeypatch, tmp_path / "torch")
    serve_weights_from(monkeypatch, RESNET18, resnet18_file)

    code, out, err = run(
        capsys, "import", "--pretrained", "torchvision:resnet18.DEFAULT", "--output", str(tmp_path / "out")
    )

    assert code == 0, err
    assert "imported: resnet18.IMAGENET1K_V1 (resnet18, 1000 classes" in out
    assert (cache / resnet18_file.name).read_bytes() == resnet18_file.read_bytes()  # torch.hub's cache
    manifest = Manifest.from_json((tmp_path / "out" / "manifest.json").read_bytes())
    transforms = RESNET18.transforms()
    assert manifest.model_name == "resnet18.IMAGENET1K_V1"  # DEFAULT resolved to what it stands for
    assert manifest.architecture == "resnet18"
    assert list(manifest.labels) == RESNET18.meta["categories"]
    pre = manifest.preprocessing
    assert (pre.resize, pre.crop) == (transforms.resize_size[0], transforms.crop_size[0])
    assert (list(pre.mean), list(pre.std)) == (transforms.mean, transforms.std)
    assert pre.interpolation == transforms.interpolation.value == "bilinear"
    assert manifest.provenance is not None
    assert manifest.provenance.kind == "torchvision"
    assert manifest.provenance.name == "resnet18.IMAGENET1K_V1"
    assert manifest.provenance.url == resnet18_file.as_uri()
    assert manifest.provenance.sha256 == file_sha256(resnet18_file)
    written = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    source = torch.load(resnet18_file, weights_only=True)
    assert written.keys() == source.keys()
    assert all(torch.equal(written[key], source[key]) for key in source)


def test_a_cached_file_whose_hash_matches_its_name_is_used_without_downloading(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    resnet18_file: Path,
) -> None:
    cache = use_torch_home(monkeypatch, tmp_path / "torch")
    cache.mkdir(parents=True)
    (cache / resnet18_file.name).write_bytes(resnet18_file.read_bytes())
    # The URL names the cached file but points nowhere: only the cache can answer.
    serve_weights_from(monkeypatch, RESNET18, tmp_path / "nowhere" / resnet18_file.name)

    out = str(tmp_path / "out")
    code, _, err = run(capsys, "import", "--pretrained", f"torchvision:{RESNET18_NAME}", "--output", out)

    assert code == 0, err
    provenance = json.loads((tmp_path / "out" / "manifest.json").read_text())["provenance"]
    assert provenance["sha256"] == file_sha256(resnet18_file)


def test_a_tampered_cached_file_is_refused_and_nothing_is_written(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    resnet18_file: Path,
) -> None:
    cache = use_torch_home(monkeypatch, tmp_path / "torch")
    cache.mkdir(parents=True)
    real_name = Path(RESNET18.url).name  # resnet18-f37072fd.pth: our file cannot have that hash
    (cache / real_name).write_bytes(resnet18_file.read_bytes())

    code, _, err = run(
        capsys,
        "import",
        "--pretrained",
        "torchvision:resnet18.IMAGENET1K_V1",
        "--output",
        str(tmp_path / "out"),
        "--publish-to",
        str(tmp_path / "store"),
    )

    assert_refused(code, err, tmp_path, real_name, "SHA-256", "corrupt or was replaced", "Delete it")


def test_a_download_that_does_not_match_its_published_hash_is_refused(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    resnet18_file: Path,
) -> None:
    cache = use_torch_home(monkeypatch, tmp_path / "torch")
    tampered = tmp_path / "source" / "resnet18-00000000.pth"
    tampered.parent.mkdir()
    tampered.write_bytes(resnet18_file.read_bytes())
    serve_weights_from(monkeypatch, RESNET18, tampered)

    code, _, err = run(
        capsys,
        "import",
        "--pretrained",
        "torchvision:resnet18.IMAGENET1K_V1",
        "--output",
        str(tmp_path / "out"),
        "--no-progress",
    )

    assert_refused(code, err, tmp_path, "could not download", "invalid hash value")
    assert not (cache / tampered.name).exists()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("torchvision:resnet18.IMAGENET1K_V9", "torchvision has no weights 'resnet18.IMAGENET1K_V9'"),
        ("torchvision:resnet18", "resnet18 has: resnet18.IMAGENET1K_V1, resnet18.DEFAULT"),
        ("torchvision:resnet1000.DEFAULT", "unknown torchvision classifier 'resnet1000'"),
        ("hub:resnet18", "unknown pretrained source 'hub:resnet18'"),
    ],
)
def test_unknown_weights_or_models_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: str, words: str
) -> None:
    code, _, err = run(capsys, "import", "--pretrained", spec, "--output", str(tmp_path / "out"))

    assert_refused(code, err, tmp_path, words)


@pytest.mark.parametrize("name", ["resnet18.IMAGENET1K_V1", "efficientnet_b0.IMAGENET1K_V1"])
def test_the_served_input_is_what_the_weights_own_transforms_make(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    architecture = name.partition(".")[0]
    weights = torchvision.models.get_model_weights(architecture)[name.partition(".")[2]]
    use_torch_home(monkeypatch, tmp_path / "torch")
    source = save_hash_named(random_state_dict(architecture), tmp_path / "source", architecture)
    serve_weights_from(monkeypatch, weights, source)
    manifest = import_pretrained(f"torchvision:{name}", progress=False).manifest
    assert manifest.preprocessing.interpolation == weights.transforms().interpolation.value

    assert_served_input_matches(manifest, weights.transforms())


def test_googlenet_serves_what_torchvision_builds_with_transform_input(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given googlenet's pretrained weights: torchvision builds it with auxiliary heads and
    # transform_input=True, which re-normalises ImageNet-normalised input to (x - 0.5) / 0.5
    weights = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
    torch.manual_seed(0)
    original = torchvision.models.googlenet(
        weights=None, aux_logits=True, transform_input=True, init_weights=True
    )
    use_torch_home(monkeypatch, tmp_path / "torch")
    serve_weights_from(
        monkeypatch, weights, save_hash_named(original.state_dict(), tmp_path / "source", "googlenet")
    )

    # When it is imported
    imported = import_pretrained("torchvision:googlenet.IMAGENET1K_V1", progress=False)

    # Then the served model (no auxiliary heads) on the served input gives torchvision's outputs
    pre = imported.manifest.preprocessing
    assert (pre.mean, pre.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    reference_model = torchvision.models.get_model("googlenet", weights=weights).eval()
    picture = full_decode(photos()["hopper-full.png"])
    with torch.inference_mode():
        served = imported.model(eval_transform(pre)(picture).unsqueeze(0))
        expected = reference_model(weights.transforms()(picture).unsqueeze(0))
    assert torch.allclose(served, expected, atol=1e-4)
