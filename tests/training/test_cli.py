"""The command line as a user meets it: help, one-command train + publish, and every error case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import torch
from PIL import Image

from lambda_src.architectures import build_model
from model_training.cli import main
from model_training.training import load_initial_weights

from .conftest import BUCKET, MODEL_NAME, PREFIX, REGION, Bucket

REPO_ROOT = Path(__file__).resolve().parents[2]
# The cheapest real training the CLI can do: a couple of steps of a small model on tiny images.
TINY = ["--architecture", "mobilenet_v3_small", "--image-size", "32", "--epochs", "1", "--no-progress"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command line in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def make_image_folder(root: Path, classes: dict[str, int]) -> Path:
    """An ImageFolder-layout folder with `count` small PNGs per class name."""
    for index, (label, count) in enumerate(classes.items()):
        (root / label).mkdir(parents=True)
        for number in range(count):
            colour = (60 * index, 255 - 60 * index, 8 * number)
            Image.new("RGB", (48, 40), colour).save(root / label / f"{number}.png")
    return root


def test_help_explains_every_command_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    for command, options in {
        "train": [
            "--demo",
            "--architecture",
            "--epochs",
            "--batch-size",
            "--lr",
            "--seed",
            "--image-size",
            "--val-fraction",
            "--init-weights",
            "--output",
            "--publish-to",
            "--version",
        ],
        "import": [
            "--pretrained",
            "--weights",
            "--architecture",
            "--labels",
            "--image-size",
            "--resize",
            "--interpolation",
            "--mean",
            "--std",
            "--model-name",
            "--output",
            "--publish-to",
            "--no-progress",
        ],
        "publish": ["--store", "--model-name", "--version"],
        "versions": ["--store", "--model-name", "--latest"],
        "predict": ["--json", "--top-k", "--auth", "--api-key", "--region"],
    }.items():
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        shown = capsys.readouterr().out
        assert exited.value.code == 0
        for option in options:
            assert option in shown, (command, option)


def test_one_command_trains_and_publishes_the_demo_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    code, out, err = run(capsys, "train", "--demo", "--demo-images", "6", *TINY, "--publish-to", str(store))
    assert code == 0, err
    assert f"published: {MODEL_NAME} v1 at {store}/{MODEL_NAME}/v1/ (LATEST -> v1)" in out
    assert f"make serve DEMO_STORE={store} DEMO_MODEL={MODEL_NAME}" in out
    assert "validation accuracy:" in out
    assert (store / MODEL_NAME / "LATEST").read_text() == "v1"
    code, out, _ = run(capsys, "versions", "--store", str(store))
    assert (code, out) == (0, f"{MODEL_NAME} in {store}:\n  v1  <- LATEST\n")
    # `make deploy` pins the version LATEST names (SnapStart snapshots one model per function version)
    code, out, _ = run(capsys, "versions", "--latest", "--store", str(store))
    assert (code, out) == (0, "v1\n")
    code, out, err = run(capsys, "versions", "--latest", "--store", str(store), "--model-name", "unpublished")
    assert (code, out) == (1, "")
    assert f"unpublished has no complete version LATEST names in {store}" in err


def test_an_image_folder_trains_with_its_folder_names_as_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_image_folder(tmp_path / "flowers", {"daisy": 4, "rose": 4, "tulip": 4})
    code, out, err = run(capsys, "train", str(data), *TINY, "--output", str(tmp_path / "out"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["labels"] == ["daisy", "rose", "tulip"]
    assert manifest["model_name"] == "flowers"
    assert manifest["preprocessing"]["crop"] == 32
    assert f"python -m model_training publish {tmp_path / 'out'}" in out


def test_publish_and_versions_against_the_deployed_stack(
    bucket: Bucket, tiny_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a deployed inference stack (moto CloudFormation) whose output names the bucket
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ModelStoreUri": {"Value": f"s3://{BUCKET}/{PREFIX}"}},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="ImageClassifierInference", TemplateBody=json.dumps(template)
    )
    # When publishing without a store, the stack's store is used
    code, out, err = run(capsys, "publish", str(tiny_output), "--no-progress")
    assert code == 0, err
    assert f"published: {MODEL_NAME} v1 at s3://{BUCKET}/{PREFIX}/{MODEL_NAME}/v1/" in out
    assert "-c model_version=v1" in out
    code, out, _ = run(
        capsys,
        "publish",
        str(tiny_output),
        "--store",
        "stack:ImageClassifierInference",
        "--version",
        "v7",
        "--no-progress",
    )
    assert code == 0
    code, out, _ = run(capsys, "versions")
    assert out == f"{MODEL_NAME} in s3://{BUCKET}/{PREFIX}:\n  v1\n  v7  <- LATEST\n"


def assert_fails(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err
    assert out == ""


def test_a_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_fails(
        capsys, ["train", str(tmp_path / "nope"), "--output", str(tmp_path / "out")], "does not exist"
    )
    assert not (tmp_path / "out").exists()


def test_an_empty_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data" / "cats").mkdir(parents=True)
    assert_fails(
        capsys, ["train", str(tmp_path / "data"), "--output", str(tmp_path / "out")], "no images found"
    )


def test_a_data_path_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data.zip").write_bytes(b"PK")
    assert_fails(capsys, ["train", str(tmp_path / "data.zip"), "--output", str(tmp_path)], "is not a folder")


def test_an_unreadable_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_image_folder(tmp_path / "data", {"a": 3, "b": 3})
    (data / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    assert_fails(
        capsys,
        ["train", str(data), "--output", str(tmp_path / "out")],
        f"cannot read image {data}/b/broken.jpg",
    )


def test_a_format_the_endpoint_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_image_folder(tmp_path / "data", {"a": 3, "b": 3})
    Image.new("RGB", (48, 40), (9, 9, 9)).save(data / "a" / "flat.bmp")
    assert_fails(
        capsys,
        ["train", str(data), "--output", str(tmp_path / "out")],
        f"cannot read image {data}/a/flat.bmp: the file is a BMP image",
    )


def test_a_single_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_image_folder(tmp_path / "data", {"only": 5})
    (tmp_path / "data" / "empty").mkdir()
    assert_fails(capsys, ["train", str(data), "--output", str(tmp_path / "out")], "only one class ('only')")


def test_a_class_too_small_to_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_image_folder(tmp_path / "data", {"a": 4, "b": 1})
    assert_fails(capsys, ["train", str(data), "--output", str(tmp_path / "out")], "class 'b' has 1 image(s)")


def test_an_unknown_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_fails(
        capsys,
        ["train", "--demo", "--architecture", "resnet19", "--output", str(tmp_path / "out")],
        "unknown architecture 'resnet19'",
    )


def test_training_that_would_keep_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert_fails(capsys, ["train", "--demo"], "give --output DIR, --publish-to STORE, or both")


def test_a_missing_bucket(bucket: Bucket, tiny_output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_fails(
        capsys,
        ["publish", str(tiny_output), "--store", "s3://no-such-bucket-here/models", "--no-progress"],
        "the bucket does not exist",
    )


def test_missing_credentials(
    tiny_output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # No credentials anywhere; the endpoint is a closed local port, so nothing could reach AWS anyway
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert_fails(
        capsys,
        ["publish", str(tiny_output), "--store", "s3://some-bucket/models"],
        "no AWS credentials found",
    )
    assert_fails(
        capsys, ["versions", "--store", "stack:ImageClassifierInference"], "no AWS credentials found"
    )


def test_a_missing_stack(bucket: Bucket, tiny_output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_fails(
        capsys, ["publish", str(tiny_output)], "Stack with id ImageClassifierInference does not exist"
    )


def test_publishing_a_version_that_exists(tiny_output: Path, tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "store")
    assert (
        run(capsys, "publish", str(tiny_output), "--store", store, "--version", "v1", "--no-progress")[0] == 0
    )
    assert_fails(
        capsys,
        ["publish", str(tiny_output), "--store", store, "--version", "v1", "--no-progress"],
        "already exists and versions are never overwritten",
    )


def test_an_invalid_version_name(
    tiny_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_fails(
        capsys,
        ["publish", str(tiny_output), "--store", str(tmp_path), "--version", "../v1"],
        "invalid version",
    )
    assert list(tmp_path.iterdir()) == []


def test_errors_exit_non_zero_without_a_traceback_for_real() -> None:
    # The same path a user takes: a new Python process, stderr as printed
    result = subprocess.run(
        [sys.executable, "-m", "model_training", "train", "/no/such/folder", "--output", "/tmp/unused"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
    )
    assert result.returncode == 1
    assert result.stderr == "error: data folder /no/such/folder does not exist\n"


def test_fine_tuning_loads_everything_but_a_classifier_of_another_size(tmp_path: Path) -> None:
    # Given weights of the same architecture trained for 10 classes
    source = build_model("mobilenet_v3_small", 10)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    notes: list[str] = []
    # When a 4-class model starts from them
    model = build_model("mobilenet_v3_small", 4)
    fresh_head = model.state_dict()["classifier.3.weight"].clone()
    load_initial_weights(model, tmp_path / "weights.pt", notes.append)
    # Then the backbone is the file's, the classifier stays fresh, and the user is told
    loaded, original = model.state_dict(), source.state_dict()
    assert torch.equal(loaded["features.0.0.weight"], original["features.0.0.weight"])
    assert torch.equal(loaded["classifier.3.weight"], fresh_head)
    assert notes == [
        "note: the classifier layer 'classifier.3' of weights.pt has 10 outputs and this model has 4: "
        "that layer starts fresh, the rest is loaded"
    ]


def test_initial_weights_that_do_not_fit_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save(build_model("resnet18", 4).state_dict(), tmp_path / "resnet.pt")
    torch.save(build_model("resnet18", 4), tmp_path / "pickled-module.pt")  # a whole module, not a state dict
    out = str(tmp_path / "out")
    base = ["train", "--demo", "--demo-images", "6", *TINY, "--output", out, "--init-weights"]
    assert_fails(capsys, [*base, str(tmp_path / "resnet.pt")], "the weights do not fit")
    assert_fails(capsys, [*base, str(tmp_path / "pickled-module.pt")], "it must be a state dict saved with")
    assert_fails(capsys, [*base, str(tmp_path / "missing.pt")], "missing.pt does not exist")
    assert not Path(out).exists()
