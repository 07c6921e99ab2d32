"""ONNX export at publish: `model.onnx` and its weights beside `model.pt`, checked against torch first.

The network is built exactly as serving builds it (`lambda_src.loader.read_state_dict`,
`lambda_src.architectures.build_and_load`) and exported with `torch.onnx.export(dynamo=True)`
with a dynamic batch axis (input `input`, (N, 3, crop, crop); output `logits`, (N, classes)),
its weights saved as ONNX external data in `model.onnx.data` (what lets ONNX Runtime read
them without a second copy, and a model over protobuf's 2 GB limit export at all).
Then ONNX Runtime runs it on real inputs: images of the demo set, encoded as JPEG and PNG
and turned into the model's input by serving's own input verb (`classifier.ModelInput`),
as one batch of several and as a batch of one. The export is kept only if, on every
input, the top-1 class is the torch model's and no logit differs by more than
`MAX_LOGIT_DIFFERENCE` x max(1, the largest |logit|). Otherwise `OnnxExportFailed` says why,
and the version is published without ONNX (the torch engine serves it as before).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lambda_src.architectures import build_and_load
from lambda_src.artifact import ONNX_DATA_FILE, ONNX_FILE, Manifest, OnnxExport, sha256_hex
from lambda_src.classifier import ModelInput
from lambda_src.errors import ModelArtifactError
from lambda_src.loader import read_state_dict
from model_training.demo_data import demo_images

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MAX_LOGIT_DIFFERENCE = 1e-4  # relative to max(1, the largest |logit|); exports measure ~1e-6
CHECK_IMAGES_PER_SHAPE = 2  # x 4 demo shapes = 8 check images
CHECK_SEED = 20_261_205
EXPORT_BATCH = 2  # the example batch traced; the batch axis stays dynamic


class OnnxExportFailed(Exception):
    """The model could not be exported to ONNX, or the export does not match the torch model."""


@dataclass(frozen=True)
class OnnxArtifact:
    """An exported, checked `model.onnx` (and `model.onnx.data`) and its manifest entry."""

    files: dict[str, bytes]  # file name -> bytes, as `export.files` lists them
    export: OnnxExport
    seconds: float  # export and check, wall clock


def export_onnx(weights: bytes, manifest: Manifest) -> OnnxArtifact:
    """Export the model `weights` + `manifest` describe and check it; OnnxExportFailed says why not."""
    started = time.perf_counter()
    try:
        network = _serving_network(weights, manifest)
    except ModelArtifactError as error:
        raise OnnxExportFailed(f"the model cannot be built for export: {error}") from None
    inputs = check_inputs(manifest)
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as folder:
        model_path = _export(network, inputs[:EXPORT_BATCH], Path(folder))
        difference, tolerance = _check(network, model_path, inputs)
        model, data = model_path.read_bytes(), _external_data(model_path)
    export = OnnxExport(
        sha256=sha256_hex(model),
        size_bytes=len(model),
        opset=_opset(model),
        max_logit_difference=difference,
        tolerance=tolerance,
        checked_inputs=len(inputs),
        exporter=f"torch {torch.__version__}, onnx {_onnx_version()}",
        data_sha256=sha256_hex(data) if data else None,
        data_size_bytes=len(data) if data else None,
    )
    files = {ONNX_FILE: model, **({ONNX_DATA_FILE: data} if data else {})}
    return OnnxArtifact(files=files, export=export, seconds=time.perf_counter() - started)


def _external_data(model_path: Path) -> bytes:
    """The weights the exporter saved beside `model_path` (empty for a model whose tensors all fit inline).

    Every external tensor must be in that one file: the manifest records no other.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False)
    locations = {
        entry.value
        for tensor in graph.graph.initializer
        if onnx.external_data_helper.uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }
    if locations - {ONNX_DATA_FILE}:
        raise OnnxExportFailed(
            f"the export keeps tensors in {sorted(locations)}, not only in {ONNX_DATA_FILE}"
        )
    data_path = model_path.with_name(ONNX_DATA_FILE)
    return data_path.read_bytes() if data_path.exists() else b""


def _serving_network(weights: bytes, manifest: Manifest) -> torch.nn.Module:
    state_dict = read_state_dict(weights, "the weights")
    description = f"{manifest.architecture} with the manifest's {manifest.num_classes} classes"
    return build_and_load(
        manifest.architecture,
        manifest.num_classes,
        state_dict,
        description,
        head=manifest.head,
        input_conv=manifest.input_conv,
    ).eval()


def check_inputs(manifest: Manifest) -> torch.Tensor:
    """The check images as the endpoint would feed them to the model: (8, channels, crop, crop)."""
    preprocessing = manifest.preprocessing
    model_input = ModelInput(preprocessing, max_pixels=preprocessing.resize * preprocessing.resize * 4)
    tensors = []
    for number, (image, _) in enumerate(
        demo_images(CHECK_IMAGES_PER_SHAPE, CHECK_SEED, preprocessing.resize)
    ):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG" if number % 2 else "PNG")
        tensors.append(model_input(buffer.getvalue()))
    return torch.stack(tensors)


def _export(network: torch.nn.Module, example: torch.Tensor, folder: Path) -> Path:
    """Export `network` to `folder`/model.onnx, its weights in model.onnx.data beside it."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        with _quiet():
            program = torch.onnx.export(
                network,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                external_data=True,
                verbose=False,
            )
            if program is None:
                raise OnnxExportFailed("torch.onnx.export returned no program")
            path = folder / ONNX_FILE
            program.save(str(path), external_data=True)  # the data file is named after it: model.onnx.data
            return path
    except OnnxExportFailed:
        raise
    except Exception as error:  # the exporter raises many types; each means "this model does not export"
        raise OnnxExportFailed(f"torch.onnx.export failed: {_first_line(error)}") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines and warnings stay out of the command's output."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _check(network: torch.nn.Module, model_path: Path, inputs: torch.Tensor) -> tuple[float, float]:
    """(largest |logit difference|, tolerance) over `inputs`, as a batch and one at a time; or raise."""
    import onnxruntime

    with torch.inference_mode():
        reference = network(inputs).float().numpy()
    try:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        batched = session.run([OUTPUT_NAME], {INPUT_NAME: inputs.numpy()})[0]
        single = session.run([OUTPUT_NAME], {INPUT_NAME: inputs[:1].numpy()})[0]
    except Exception as error:
        raise OnnxExportFailed(f"ONNX Runtime cannot run the export: {_first_line(error)}") from None
    if batched.shape != reference.shape or single.shape != reference[:1].shape:
        raise OnnxExportFailed(
            f"the export gives outputs of shape {list(batched.shape)} for a batch of {len(inputs)} and "
            f"{list(single.shape)} for one image; the torch model gives {list(reference.shape)}"
        )
    tolerance = MAX_LOGIT_DIFFERENCE * max(1.0, float(np.abs(reference).max()))
    difference = float(max(np.abs(batched - reference).max(), np.abs(single - reference[:1]).max()))
    if not difference <= tolerance:  # also catches NaN
        raise OnnxExportFailed(
            f"the export's logits differ from the torch model's by up to {difference:.3g} "
            f"(the bound is {tolerance:.3g})"
        )
    for row, (expected, actual) in enumerate(zip(reference, batched, strict=True)):
        top_two = np.sort(expected)[-2:]
        tie = top_two[1] - top_two[0] <= tolerance  # either class is a right answer
        if int(actual.argmax()) != int(expected.argmax()) and not tie:
            raise OnnxExportFailed(
                f"the export's top-1 class for check image {row + 1} is {int(actual.argmax())}, "
                f"the torch model's is {int(expected.argmax())}"
            )
    return difference, tolerance


def _opset(data: bytes) -> int:
    import onnx

    model = onnx.load_from_string(data)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def _onnx_version() -> str:
    import onnx

    return str(onnx.__version__)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
