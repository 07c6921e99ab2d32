"""ONNX export at publish: model.onnx (+ .data) beside model.pt, checked against torch, or why not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from lambda_src.artifact import SCHEMA_VERSION, Manifest, sha256_hex
from lambda_src.loader import load_model
from lambda_src.model_store import ModelLocation
from model_training import onnx_export
from model_training.cli import main
from model_training.publishing import publish

from .conftest import MODEL_NAME, Bucket


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_publish_writes_a_checked_onnx_export_with_a_dynamic_batch_axis(
    tiny_output: Path, tmp_path: Path
) -> None:
    # When a tiny trained model is published with ONNX
    published = publish(tiny_output, str(tmp_path), progress=False, onnx=True)

    # Then model.onnx and its weights (model.onnx.data) sit beside model.pt and the manifest describes both
    version = tmp_path / MODEL_NAME / "v1"
    assert sorted(path.name for path in version.iterdir()) == [
        "manifest.json", "model.onnx", "model.onnx.data", "model.pt"
    ]  # fmt: skip
    manifest = Manifest.from_json((version / "manifest.json").read_bytes())
    graph, weights = (version / "model.onnx").read_bytes(), (version / "model.onnx.data").read_bytes()
    assert manifest.schema_version == SCHEMA_VERSION == 4
    assert manifest.onnx is not None and manifest.onnx == published.manifest.onnx
    assert (manifest.onnx.sha256, manifest.onnx.size_bytes) == (sha256_hex(graph), len(graph))
    assert (manifest.onnx.data_sha256, manifest.onnx.data_size_bytes) == (sha256_hex(weights), len(weights))
    assert manifest.onnx.opset == onnx.load_from_string(graph).opset_import[0].version >= 18
    # the graph holds no large tensor itself: they are in the data file, which it names
    external = [
        tensor for tensor in onnx.load_from_string(graph).graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
    ]  # fmt: skip
    assert external and len(weights) > 10 * len(graph)
    assert {
        entry.value for tensor in external for entry in tensor.external_data if entry.key == "location"
    } == {"model.onnx.data"}
    assert 0 <= manifest.onnx.max_logit_difference <= manifest.onnx.tolerance <= 1e-3
    assert manifest.onnx.checked_inputs == 8
    assert published.onnx_skipped is None and published.onnx_seconds is not None
    # And ONNX Runtime answers any batch size as the served torch model does
    served = load_model(ModelLocation(str(tmp_path), MODEL_NAME), torch_threads=1)
    session = onnxruntime.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    crop = manifest.preprocessing.crop
    for batch in (1, 3, 5):
        inputs = torch.rand(batch, 3, crop, crop, generator=torch.Generator().manual_seed(batch))
        (logits,) = session.run(None, {"input": inputs.numpy()})
        with torch.inference_mode():
            expected = served.network(inputs).numpy()
        assert logits.shape == (batch, manifest.num_classes)
        np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_a_model_that_does_not_match_is_published_without_onnx_and_the_command_says_why(
    tiny_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bound no export can meet (a real export, a real comparison)
    monkeypatch.setattr(onnx_export, "MAX_LOGIT_DIFFERENCE", -1.0)

    code, out, err = run(capsys, "publish", str(tiny_output), "--store", str(tmp_path), "--no-progress")

    assert code == 0, err
    assert "onnx:      not published: the export's logits differ from the torch model's by up to" in out
    assert "the torch engine serves this version" in out
    version = tmp_path / MODEL_NAME / "v1"
    assert sorted(path.name for path in version.iterdir()) == ["manifest.json", "model.pt"]
    assert json.loads((version / "manifest.json").read_text())["onnx"] is None


def test_export_onnx_adds_onnx_to_a_published_version_as_a_new_version(
    bucket: Bucket, tiny_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a version published without ONNX
    code, _, err = run(
        capsys, "publish", str(tiny_output), "--store", bucket.store_uri, "--no-onnx", "--no-progress"
    )
    assert code == 0, err
    v1 = f"models/{MODEL_NAME}/v1"
    assert json.loads(bucket.read(f"{v1}/manifest.json"))["onnx"] is None

    # When export-onnx runs on it
    code, out, err = run(
        capsys, "export-onnx", "--store", bucket.store_uri, "--model-name", MODEL_NAME, "--no-progress"
    )

    # Then v2 holds the same weights and a checked model.onnx with its data, LATEST moves, v1 is untouched
    assert code == 0, err
    assert f"published: {MODEL_NAME} v2" in out and "onnx:      model.onnx + model.onnx.data (" in out
    v2 = f"models/{MODEL_NAME}/v2"
    assert bucket.read(f"{v2}/model.pt") == bucket.read(f"{v1}/model.pt")
    manifest = Manifest.from_json(bucket.read(f"{v2}/manifest.json"))
    assert manifest.onnx is not None and manifest.onnx.sha256 == sha256_hex(bucket.read(f"{v2}/model.onnx"))
    assert manifest.onnx.data_sha256 == sha256_hex(bucket.read(f"{v2}/model.onnx.data"))
    assert bucket.read(f"models/{MODEL_NAME}/LATEST") == b"v2"
    stored = bucket.keys()
    assert not {f"{v1}/model.onnx", f"{v1}/model.onnx.data"} & set(stored)

    # And a version that has ONNX already is refused in words, with nothing published
    code, _, err = run(capsys, "export-onnx", "--store", bucket.store_uri, "--model-name", MODEL_NAME)
    assert code == 1
    assert "v2/ already has model.onnx" in err
    assert bucket.keys() == stored


@pytest.mark.parametrize(("location", "refused"), [("model.onnx.data", False), ("weights.bin", True)])
def test_an_export_whose_weights_are_in_another_file_than_model_onnx_data_is_refused(
    tmp_path: Path, location: str, refused: bool
) -> None:
    # Given a graph whose weights ONNX keeps in `location` beside it
    weight = onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "weight")
    node = onnx.helper.make_node("MatMul", ["input", "weight"], ["logits"])
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    path = tmp_path / "model.onnx"
    onnx.save_model(
        onnx.helper.make_model(graph),
        str(path),
        save_as_external_data=True,
        location=location,
        size_threshold=0,
    )

    # Then only model.onnx.data is taken (the manifest records no other file)
    if refused:
        with pytest.raises(onnx_export.OnnxExportFailed, match=r"tensors in \['weights.bin'\]"):
            onnx_export._external_data(path)
    else:
        assert onnx_export._external_data(path) == np.ones((4, 4), np.float32).tobytes()
