"""The onnxruntime engine: same verbs and answers as the torch engine, without torch, from model.onnx.

One real model for the whole file: a mobilenet_v3_small with a head fitted to the test photos
(tests/imported_models.fit_head), so its scores move with the pictures, exported once by the
publishing code and published under three names, one per interpolation the manifest allows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import boto3
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from lambda_src.architectures import build_model
from lambda_src.artifact import Manifest, Preprocessing, manifest_key, onnx_key, sha256_hex, version_file_key
from lambda_src.batch import BatchWorker, FolderImages, ModelCache
from lambda_src.contract import ENV_MODEL_ENGINE, ENV_MODEL_NAME, ENV_MODEL_STORE, ModelEngine
from lambda_src.cpus import available_cpus
from lambda_src.images import decode_image
from lambda_src.model_store import ModelLocation, S3ModelStore
from lambda_src.onnx_engine import load_onnx_model, preprocess
from lambda_src.prefetch import PrefetchingStore, prefetch_from_env
from lambda_src.preprocessing import eval_transform
from lambda_src.service import InferenceService
from lambda_src.settings import RuntimeSettings
from model_training.onnx_export import export_onnx
from model_training.publishing import publish_artifact
from tests.support.events import api_gateway_event, body_of
from tests.support.imported_models import MAX_PIXELS, fit_head, landscape, photos
from tests.support.imported_models import encode as encode_image
from tests.support.telemetry import CapturedTelemetry
from tests.support.tiny_model import make_manifest, state_dict_bytes

from .conftest import PREFIX, ModelBucket

REPO_ROOT = Path(__file__).resolve().parents[2]
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
LABELS = tuple(f"class-{index}" for index in range(10))
SCORE_BOUND = 1e-3  # served top-5 scores, onnxruntime vs torch engine


@dataclasses.dataclass(frozen=True)
class OnnxStore:
    root: Path
    model_names: dict[str, str]  # interpolation -> model published with it
    without_onnx: str  # a model published without model.onnx


@pytest.fixture(scope="module")
def onnx_store(tmp_path_factory: pytest.TempPathFactory) -> OnnxStore:
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", len(LABELS)).eval()
    fit_head(model, eval_transform(Preprocessing()))
    head = model.classifier[-1]
    with torch.no_grad():
        # The other classes get distinct mixes of the two fitted rows, below the winner's logit:
        # ten picture-dependent scores with clear gaps, so each rank's class is a real check.
        for row in set(range(len(LABELS))) - {1, 2}:
            mix = (0.42 * math.sin(row), 0.42 * math.cos(row))
            head.weight[row] = mix[0] * head.weight[1] + mix[1] * head.weight[2]
            head.bias[row] = mix[0] * head.bias[1] + mix[1] * head.bias[2]
    weights = state_dict_bytes(model)
    root = tmp_path_factory.mktemp("onnx-store")
    base = make_manifest(
        "base", "v1", weights, architecture="mobilenet_v3_small", labels=LABELS, preprocessing=Preprocessing()
    )
    exported = export_onnx(weights, base)  # once: the network is the same whatever the resize filter
    names = {}
    for interpolation in INTERPOLATIONS:
        name = f"photos-{interpolation}"
        manifest = dataclasses.replace(
            base,
            model_name=name,
            preprocessing=Preprocessing(interpolation=interpolation),
            onnx=exported.export,
        )
        publish_artifact(weights, manifest, str(root), progress=False, onnx_files=exported.files)
        names[interpolation] = name
    publish_artifact(weights, dataclasses.replace(base, model_name="torch-only"), str(root), progress=False)
    return OnnxStore(root=root, model_names=names, without_onnx="torch-only")


def make_service(store: OnnxStore, model_name: str, engine: ModelEngine) -> InferenceService:
    settings = RuntimeSettings(torch_threads=1, engine=engine)
    return InferenceService(ModelLocation(str(store.root), model_name), settings=settings)


def media_type(data: bytes) -> str:
    return "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"


def top5(service: InferenceService, data: bytes, top_k: int = 5) -> list[dict]:
    event = api_gateway_event(
        "POST", "/predict", body=data, content_type=media_type(data), query={"top_k": str(top_k)}
    )
    response = service.handle(event)
    assert response["statusCode"] == 200, response["body"]
    return body_of(response)["results"][0]["predictions"]


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_served_top5_matches_the_torch_engine_on_real_photos(
    onnx_store: OnnxStore, interpolation: str
) -> None:
    name = onnx_store.model_names[interpolation]
    torch_service = make_service(onnx_store, name, ModelEngine.TORCH)
    onnx_service = make_service(onnx_store, name, ModelEngine.ONNXRUNTIME)

    for photo, data in photos().items():
        expected, served = top5(torch_service, data), top5(onnx_service, data)
        every_class = {p["index"]: p["score"] for p in top5(torch_service, data, top_k=len(LABELS))}
        for rank, (ours, theirs) in enumerate(zip(served, expected, strict=True)):
            assert ours["label"] == LABELS[ours["index"]]
            # the same class at each rank, unless torch itself scores the two within the bound (a tie)
            assert ours["index"] == theirs["index"] or (
                abs(every_class[ours["index"]] - theirs["score"]) <= SCORE_BOUND
            ), (photo, rank, served, expected)
            assert abs(ours["score"] - every_class[ours["index"]]) <= SCORE_BOUND, (photo, rank)
    # The fitted head makes the scores depend on the picture: the comparison means something
    assert top5(onnx_service, photos()["hopper-full.png"])[0]["index"] == 1
    assert top5(onnx_service, photos()["landscape-12mp-reduced.jpg"])[0]["index"] == 2


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize(("resize", "crop"), [(256, 224), (235, 224), (40, 32)])
def test_preprocessing_in_numpy_gives_the_torch_engines_input(
    interpolation: str, resize: int, crop: int
) -> None:
    # Both engines resize with the same Pillow filter: only float rounding may differ
    preprocessing = Preprocessing(resize=resize, crop=crop, interpolation=interpolation)
    pictures = {**photos(), "odd-size.png": encode_image(landscape((333, 517), seed=3), "PNG")}
    for name, data in pictures.items():
        image = decode_image(data, max_pixels=MAX_PIXELS, min_side=resize)
        expected = eval_transform(preprocessing)(image).numpy()
        served = preprocess(image, preprocessing)
        assert served.shape == expected.shape == (3, crop, crop) and served.dtype == np.float32
        levels = np.abs(served - expected) * np.asarray(preprocessing.std)[:, None, None] * 255
        assert levels.max() < 1e-3, (name, float(levels.max()))  # in steps of 8-bit pixel value


def test_a_version_without_onnx_answers_503_saying_so(onnx_store: OnnxStore) -> None:
    service = make_service(onnx_store, onnx_store.without_onnx, ModelEngine.ONNXRUNTIME)

    response = service.handle(api_gateway_event("GET", "/health"))

    assert response["statusCode"] == 503
    error = body_of(response)["error"]
    assert (error["code"], error["reason"]) == ("model_unavailable", "no_onnx_export")
    assert "has no ONNX export" in error["message"] and "torch engine" in error["message"]
    # The torch engine serves the same version
    assert make_service(onnx_store, onnx_store.without_onnx, ModelEngine.TORCH).load()


@pytest.mark.parametrize("store_kind", ["local", "s3"])
@pytest.mark.parametrize(
    ("replace", "said"),
    [
        (lambda data: data[:-10] + b"0123456789", "SHA-256"),  # same size, other bytes
        (lambda data: bytes(1000) + data[1000:], "SHA-256"),  # no model ONNX Runtime can read
        (lambda data: data[:-10], "but the manifest says"),  # truncated: refused by its size
    ],
    ids=["altered", "garbled", "truncated"],
)
@pytest.mark.parametrize("file_name", ["model.onnx", "model.onnx.data"])
def test_a_replaced_onnx_file_is_refused_as_invalid(
    onnx_store: OnnxStore,
    model_bucket: ModelBucket,
    tmp_path: Path,
    store_kind: str,
    replace: Callable[[bytes], bytes],
    said: str,
    file_name: str,
) -> None:
    name = onnx_store.model_names["bilinear"]
    copy = tmp_path / "store"
    subprocess.run(["cp", "-r", str(onnx_store.root), str(copy)], check=True)
    path = copy / version_file_key("", name, "v1", file_name)
    path.write_bytes(replace(path.read_bytes()))
    location = ModelLocation(str(copy), name)
    if store_kind == "s3":
        prefix = f"{PREFIX}/replaced-{len(path.read_bytes())}"
        for file in copy.rglob("*"):
            if file.is_file():
                model_bucket.write(f"{prefix}/{file.relative_to(copy).as_posix()}", file.read_bytes())
        location = ModelLocation(f"s3://{model_bucket.name}/{prefix}", name)
    telemetry = CapturedTelemetry()
    service = InferenceService(
        location, settings=RuntimeSettings(engine=ModelEngine.ONNXRUNTIME), telemetry=telemetry
    )

    response = service.handle(api_gateway_event("GET", "/health"))

    assert response["statusCode"] == 503
    assert body_of(response)["error"]["reason"] == "invalid_model"
    (failure,) = telemetry.logs("model load failed")
    assert said in failure["reason"]  # the log says what was wrong with which file
    assert f"/{file_name} " in failure["reason"]


def test_an_export_whose_outputs_are_not_finite_is_refused_at_warm_up(
    onnx_store: OnnxStore, tmp_path: Path
) -> None:
    # Given a version whose model.onnx (recorded in its manifest, hash and size) has a NaN bias
    name = onnx_store.model_names["bilinear"]
    copy = tmp_path / "store"
    subprocess.run(["cp", "-r", str(onnx_store.root), str(copy)], check=True)
    onnx_path, manifest_path = copy / onnx_key("", name, "v1"), copy / manifest_key("", name, "v1")
    graph = onnx.load_from_string(onnx_path.read_bytes())
    (bias,) = [tensor for tensor in graph.graph.initializer if list(tensor.dims) == [len(LABELS)]]
    bias.CopyFrom(numpy_helper.from_array(np.full(len(LABELS), np.nan, np.float32), bias.name))
    onnx_path.write_bytes(graph.SerializeToString())
    manifest = Manifest.from_json(manifest_path.read_bytes())
    assert manifest.onnx is not None
    recorded = dataclasses.replace(
        manifest.onnx, sha256=sha256_hex(onnx_path.read_bytes()), size_bytes=onnx_path.stat().st_size
    )
    manifest_path.write_bytes(dataclasses.replace(manifest, onnx=recorded).to_json())
    service = InferenceService(
        ModelLocation(str(copy), name), settings=RuntimeSettings(engine=ModelEngine.ONNXRUNTIME)
    )
    # Then loading it answers 503 invalid_model (the torch engine answers so too), health and requests alike
    for event in (
        api_gateway_event("GET", "/health"),
        api_gateway_event("POST", "/predict", body=photos()["hopper-full.png"], content_type="image/png"),
    ):
        response = service.handle(event)
        assert response["statusCode"] == 503, response["body"]
        assert body_of(response)["error"]["reason"] == "invalid_model"


@pytest.mark.parametrize(("requested", "expected"), [(0, available_cpus()), (1, 1)])
def test_threads_follow_the_cpus_the_function_has(
    onnx_store: OnnxStore, requested: int, expected: int
) -> None:
    settings = RuntimeSettings(torch_threads=requested, engine=ModelEngine.ONNXRUNTIME)
    service = InferenceService(
        ModelLocation(str(onnx_store.root), onnx_store.model_names["bilinear"]), settings=settings
    )
    assert service.load()

    classifier = service.holder.get()

    assert classifier.threads == expected
    assert classifier.model.session.get_session_options().intra_op_num_threads == expected


def test_the_batch_worker_serves_with_either_engine(onnx_store: OnnxStore, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for photo, data in photos().items():
        (folder / photo).write_bytes(data)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    keys = sorted(path.name for path in folder.iterdir())
    name = onnx_store.model_names["bicubic"]

    lines = {}
    for engine in ModelEngine:
        settings = RuntimeSettings(torch_threads=1, engine=engine)
        worker = BatchWorker(ModelCache(str(onnx_store.root), name, settings=settings))
        lines[engine] = worker.classify(FolderImages(folder), keys, version="v1", top_k=3)

    torch_lines, onnx_lines = lines[ModelEngine.TORCH], lines[ModelEngine.ONNXRUNTIME]
    for expected, served in zip(torch_lines, onnx_lines, strict=True):
        assert served["key"] == expected["key"]
        if served["key"] == "broken.jpg":
            assert served["error"]["code"] == expected["error"]["code"] == "bad_request"
            continue
        assert [p["index"] for p in served["predictions"]] == [p["index"] for p in expected["predictions"]]
        for a, b in zip(served["predictions"], expected["predictions"], strict=True):
            assert abs(a["score"] - b["score"]) <= SCORE_BOUND


# The Lambda entry point with MODEL_ENGINE=onnxruntime, in a fresh interpreter where importing torch
# or torchvision fails: the handler loads, answers /health and /predict, goes through SnapStart's
# hooks and answers again, and neither was imported.
WITHOUT_TORCH = """
import base64, json, sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm"):
            raise ImportError(f"the onnxruntime engine imported {name}")
        return None
sys.meta_path.insert(0, NoTorch())
from lambda_src import handler
events = json.load(open(sys.argv[1]))
health = handler.lambda_handler(events["health"], None)
predict = handler.lambda_handler(events["predict"], None)
# SnapStart's hooks, as the runtime client runs them around a snapshot and its restore
from lambda_src.snapstart import SnapshotLifecycle
lifecycle = SnapshotLifecycle(handler.service)
lifecycle.before_snapshot()
lifecycle.after_restore()
restored = handler.lambda_handler(events["predict"], None)
imported = sorted({name.split(".")[0] for name in sys.modules} & {"torch", "torchvision", "timm"})
print(json.dumps({
    "health": health["statusCode"], "predict": predict["statusCode"], "body": json.loads(predict["body"]),
    "restored": restored["statusCode"],
    "imported": imported, "onnxruntime": "onnxruntime" in sys.modules,
}))
"""


def test_the_handler_serves_with_onnxruntime_and_never_imports_torch(
    onnx_store: OnnxStore, tmp_path: Path
) -> None:
    events = tmp_path / "events.json"
    photo = photos()["hopper-reduced.jpg"]
    predict = api_gateway_event("POST", "/predict", body=photo, content_type="image/jpeg")
    events.write_text(json.dumps({"health": api_gateway_event("GET", "/health"), "predict": predict}))
    environment = {
        **os.environ,
        ENV_MODEL_STORE: str(onnx_store.root),
        ENV_MODEL_NAME: onnx_store.model_names["bilinear"],
        ENV_MODEL_ENGINE: "onnxruntime",
        "TORCH_NUM_THREADS": "1",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "PYTHONPATH": str(REPO_ROOT),
    }
    finished = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(events)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=environment,
        timeout=180,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    assert (result["health"], result["predict"], result["restored"]) == (200, 200, 200), result
    assert result["body"]["results"][0]["predictions"][0]["index"] == 1
    assert result["imported"] == [] and result["onnxruntime"]


def test_an_unknown_engine_is_a_misconfiguration() -> None:
    service = InferenceService.from_env(
        {ENV_MODEL_STORE: "/nowhere", ENV_MODEL_NAME: "m", ENV_MODEL_ENGINE: "tensorflow"}
    )
    response = service.handle(api_gateway_event("GET", "/health"))
    assert response["statusCode"] == 503
    error = body_of(response)["error"]
    assert error["reason"] == "misconfigured"


def test_the_s3_prefetch_fetches_the_engines_model_file(
    onnx_store: OnnxStore, model_bucket: ModelBucket
) -> None:
    # Given the published versions in S3 (the local store has the bucket's layout)
    for path in onnx_store.root.rglob("*"):
        if path.is_file():
            model_bucket.write(f"{PREFIX}/{path.relative_to(onnx_store.root).as_posix()}", path.read_bytes())
    reads: list[str] = []
    ranged: list[str] = []
    client = boto3.client("s3", region_name="eu-west-1")

    def record(params: dict, **_: object) -> None:
        if params.get("Range", "bytes=0-").startswith("bytes=0-"):
            reads.append(params["Key"])
        if "Range" in params:
            ranged.append(params["Key"])

    client.meta.events.register("before-parameter-build.s3.GetObject", record)
    name = onnx_store.model_names["bilinear"]
    location = model_bucket.location(name)
    # When the onnxruntime engine's init prefetches the model and loads it through the prefetch
    prefetching = PrefetchingStore(
        S3ModelStore(model_bucket.name, PREFIX, client=client), location, engine=ModelEngine.ONNXRUNTIME
    )
    loaded = load_onnx_model(location, threads=1, store=prefetching)
    # Then it fetched model.onnx and its data, not model.pt, each object once, and serves the version
    export_files = [f"{PREFIX}/{name}/v1/{file}" for file in ("model.onnx", "model.onnx.data")]
    assert sorted(reads) == sorted(
        [f"{PREFIX}/{name}/LATEST", f"{PREFIX}/{name}/v1/manifest.json", *export_files]
    )
    assert loaded.manifest.model_name == name
    # in byte ranges into one buffer each, as the weights are (one whole GET would hold them twice)
    assert sorted(ranged) == export_files
    # And the environment's engine reaches the prefetch the handler starts
    from_env = prefetch_from_env(
        {ENV_MODEL_STORE: location.store_uri, ENV_MODEL_NAME: name, ENV_MODEL_ENGINE: "onnxruntime"}
    )
    assert from_env is not None and from_env.engine is ModelEngine.ONNXRUNTIME
    from_env.finish()
