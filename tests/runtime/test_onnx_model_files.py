"""The onnxruntime engine's model files: model.onnx and its weights in model.onnx.data.

A version's export is two files since schema version 4 (one, model.onnx, before). The engine
gives ONNX Runtime a private folder holding exactly the files the manifest records (local
files linked by descriptor, S3 files verified and written out) and removes it after the
session is built. These tests load a tiny resnet18's real export from a local store and from
S3 (moto), with every way the folder or the files can fail.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import resource
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx
import pytest

from lambda_src import onnx_engine
from lambda_src.artifact import Manifest, manifest_key, onnx_data_key, onnx_key, sha256_hex
from lambda_src.contract import ModelEngine
from lambda_src.errors import IntegrityError
from lambda_src.model_store import LocalModelStore, ModelLocation, ModelStore, S3ModelStore
from lambda_src.onnx_engine import load_onnx_model
from lambda_src.prefetch import PrefetchingStore
from lambda_src.service import InferenceService
from lambda_src.settings import RuntimeSettings
from model_training.onnx_export import export_onnx
from model_training.publishing import publish_artifact
from tests.support.events import api_gateway_event, body_of
from tests.support.images import coloured_image, encode
from tests.support.telemetry import CapturedTelemetry
from tests.support.tiny_model import make_manifest

from .conftest import PREFIX, ModelBucket

NAME = "two-files"


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory, tiny_weights: bytes) -> Path:
    """A local store with NAME v1: the tiny model's weights and its checked export (two files)."""
    root = tmp_path_factory.mktemp("onnx-files")
    manifest = make_manifest(NAME, "v1", tiny_weights)
    exported = export_onnx(tiny_weights, manifest)
    assert sorted(exported.files) == ["model.onnx", "model.onnx.data"]
    manifest = dataclasses.replace(manifest, onnx=exported.export)
    publish_artifact(
        tiny_weights, manifest, str(root), version="v1", progress=False, onnx_files=exported.files
    )
    return root


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's temporary directory for one test (Lambda's /tmp), empty at its start."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def copy_local(root: Path, into: Path) -> ModelLocation:
    """The store's files, copied to a fresh local folder; its location for NAME."""
    for path in root.rglob("*"):
        if path.is_file():
            (into / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            (into / path.relative_to(root)).write_bytes(path.read_bytes())
    return ModelLocation(str(into), NAME)


def copy_store(root: Path, into: Path, model_bucket: ModelBucket, store_kind: str) -> ModelLocation:
    """The store's files, copied to a fresh local folder or S3 prefix (named after `into`)."""
    if store_kind == "local":
        return copy_local(root, into)
    prefix = f"{PREFIX}/{into.name}"
    for path in root.rglob("*"):
        if path.is_file():
            model_bucket.write(f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())
    return ModelLocation(f"s3://{model_bucket.name}/{prefix}", NAME)


def onnx_service(location: ModelLocation, telemetry: CapturedTelemetry | None = None) -> InferenceService:
    settings = RuntimeSettings(engine=ModelEngine.ONNXRUNTIME, torch_threads=1, model_retry_seconds=0)
    return InferenceService(location, settings=settings, telemetry=telemetry or CapturedTelemetry())


def predictions(service: InferenceService) -> list[dict]:
    image = encode(coloured_image("green", seed=7), "PNG")
    response = service.handle(api_gateway_event("POST", "/predict", body=image, content_type="image/png"))
    assert response["statusCode"] == 200, response["body"]
    return body_of(response)["results"][0]["predictions"]


def unavailable(service: InferenceService, telemetry: CapturedTelemetry) -> tuple[str, str]:
    """The 503's reason and what the log says about the failed load."""
    response = service.handle(api_gateway_event("GET", "/health"))
    assert response["statusCode"] == 503, response["body"]
    (failure,) = telemetry.logs("model load failed")
    return body_of(response)["error"]["reason"], failure["reason"]


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_the_export_is_served_from_a_private_folder_that_is_removed_after_the_load(
    store_root: Path, model_bucket: ModelBucket, tmp_path: Path, private_tmp: Path, store_kind: str
) -> None:
    location = copy_store(store_root, tmp_path / f"store-{store_kind}", model_bucket, store_kind)

    loaded = load_onnx_model(location, threads=1)

    assert loaded.manifest.onnx is not None and loaded.manifest.onnx.data_sha256 is not None
    assert list(private_tmp.iterdir()) == []  # nothing of the model stays in /tmp
    service = onnx_service(location)
    top = predictions(service)
    assert top[0]["label"] == "green"
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_a_version_3_export_with_its_weights_inside_model_onnx_still_serves(
    store_root: Path, model_bucket: ModelBucket, tmp_path: Path, store_kind: str
) -> None:
    # Given v1 again as schema version 3 published it: one model.onnx holding the weights
    store = tmp_path / "v3-layout"
    version = store / NAME / "v1"
    for file in ("manifest.json", "model.pt"):
        (version / file).parent.mkdir(parents=True, exist_ok=True)
        (version / file).write_bytes((store_root / NAME / "v1" / file).read_bytes())
    (store / NAME / "LATEST").write_text("v1")
    single = onnx.load(str(store_root / NAME / "v1" / "model.onnx"))  # the data file's tensors, inline
    one_file = single.SerializeToString()
    (version / "model.onnx").write_bytes(one_file)
    manifest = Manifest.from_json((version / "manifest.json").read_bytes())
    assert manifest.onnx is not None
    version_3 = {
        **manifest.to_dict(),
        "schema_version": 3,
        "onnx": {
            **{key: value for key, value in vars(manifest.onnx).items() if not key.startswith("data_")},
            "sha256": sha256_hex(one_file),
            "size_bytes": len(one_file),
        },
    }
    Manifest.from_dict(version_3)  # valid as it stands
    (version / "manifest.json").write_text(json.dumps(version_3))
    location = copy_store(store, tmp_path / f"store-{store_kind}", model_bucket, store_kind)

    # Then the onnxruntime engine serves it, with the two-file version's answers
    served = predictions(onnx_service(location))
    two_files = predictions(onnx_service(ModelLocation(str(store_root), NAME)))
    assert [p["label"] for p in served] == [p["label"] for p in two_files]
    for ours, theirs in zip(served, two_files, strict=True):
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-6)


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_a_missing_model_onnx_data_answers_503_artifact_missing(
    store_root: Path, model_bucket: ModelBucket, tmp_path: Path, store_kind: str
) -> None:
    copy = tmp_path / "copy"
    location = copy_local(store_root, copy)
    (copy / onnx_data_key("", NAME, "v1")).unlink()
    if store_kind == "s3":
        location = copy_store(copy, tmp_path / "without-data", model_bucket, "s3")
    telemetry = CapturedTelemetry()

    reason, logged = unavailable(onnx_service(location, telemetry), telemetry)

    assert reason == "artifact_missing"
    assert "model.onnx.data" in logged


def test_a_temporary_folder_that_cannot_be_made_answers_503_and_says_which(
    store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    telemetry = CapturedTelemetry()

    reason, logged = unavailable(onnx_service(ModelLocation(str(store_root), NAME), telemetry), telemetry)

    assert reason == "load_error"
    assert f"cannot make a folder in {tmp_path / 'no-such-folder'}" in logged


@contextmanager
def files_larger_than_refused(limit_bytes: int) -> Iterator[None]:
    """Writes past `limit_bytes` in a file fail with EFBIG, as writes to a full /tmp fail with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_file_that_does_not_fit_in_the_temporary_folder_is_kept_in_memory_and_served(
    store_root: Path, model_bucket: ModelBucket, tmp_path: Path, private_tmp: Path
) -> None:
    # Given the export in S3, whose weights file cannot be written whole to /tmp (the write fails
    # part way, as on a full /tmp; model.onnx, smaller than the limit, fits)
    location = copy_store(store_root, tmp_path / "full-tmp", model_bucket, "s3")
    manifest = Manifest.from_json((store_root / manifest_key("", NAME, "v1")).read_bytes())
    assert manifest.onnx is not None and manifest.onnx.data_size_bytes is not None
    assert manifest.onnx.size_bytes < manifest.onnx.data_size_bytes // 2

    with files_larger_than_refused(manifest.onnx.data_size_bytes // 2):
        loaded = load_onnx_model(location, threads=1)
        # Then the load kept it in memory for ONNX Runtime, left no partial file, and serves
        assert list(private_tmp.iterdir()) == []
        service = onnx_service(location)
        assert predictions(service)[0]["label"] == "green"
    assert loaded.manifest.onnx == manifest.onnx


def test_files_the_temporary_folder_has_no_room_for_are_never_written(
    store_root: Path,
    model_bucket: ModelBucket,
    tmp_path: Path,
    private_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a /tmp whose file system reports less room than either file needs
    location = copy_store(store_root, tmp_path / "no-room", model_bucket, "s3")
    real_usage = shutil.disk_usage

    def usage(path: str | Path) -> Any:
        return (
            real_usage(path)._replace(free=onnx_engine.TEMPORARY_HEADROOM_BYTES)
            if str(private_tmp) in str(path)
            else real_usage(path)
        )

    monkeypatch.setattr(onnx_engine.shutil, "disk_usage", usage)
    written: list[str] = []
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: written.append(self.name))

    # Then both files stay in memory (model.onnx handed over as bytes) and the version serves
    assert predictions(onnx_service(location))[0]["label"] == "green"
    assert written == [] and list(private_tmp.iterdir()) == []


def test_a_local_file_replaced_while_it_loads_fails_that_load_in_words_never_serving_it(
    store_root: Path, tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a local store whose model.onnx.data is replaced by other bytes just after it was opened
    location = copy_local(store_root, tmp_path / "swapped")
    data_path = Path(location.store_uri) / onnx_data_key("", NAME, "v1")
    published = data_path.read_bytes()
    opened, swaps = onnx_engine._open_local, [1]

    def open_then_swap(store: ModelStore, local: LocalModelStore, key: str, size: int) -> io.BufferedReader:
        file = opened(store, local, key, size)
        if key.endswith("/model.onnx.data") and swaps and swaps.pop():  # the first load only
            swapped = data_path.with_name("swapped")
            swapped.write_bytes(bytes(len(published)))  # zeros: a model that would run, wrongly
            swapped.replace(data_path)
        return file

    monkeypatch.setattr(onnx_engine, "_open_local", open_then_swap)
    telemetry = CapturedTelemetry()
    service = onnx_service(location, telemetry)

    # Then that load fails, and the log says why (not ONNX Runtime's words about a path)
    reason, logged = unavailable(service, telemetry)
    assert reason == "store_unreadable"
    assert f"{data_path} was replaced or removed while the model loaded" in logged
    # And the next load reads the new file, which does not match the manifest: never served
    response = service.handle(api_gateway_event("GET", "/health"))
    assert response["statusCode"] == 503 and body_of(response)["error"]["reason"] == "invalid_model"
    # Put back, the published file serves
    data_path.write_bytes(published)
    assert predictions(service)[0]["label"] == "green"
    assert list(private_tmp.iterdir()) == []


def test_when_model_onnx_stays_in_memory_its_weights_do_too_never_read_from_the_working_directory(
    store_root: Path,
    model_bucket: ModelBucket,
    tmp_path: Path,
    private_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the export in S3, a /tmp that refuses model.onnx (and would take its data), and a
    # working directory holding another model.onnx.data (zeros: a model that would run, wrongly)
    location = copy_store(store_root, tmp_path / "graph-in-memory", model_bucket, "s3")
    data_size = (store_root / onnx_data_key("", NAME, "v1")).stat().st_size
    elsewhere = tmp_path / "working-directory"
    elsewhere.mkdir()
    (elsewhere / "model.onnx.data").write_bytes(bytes(data_size))
    monkeypatch.chdir(elsewhere)
    write_bytes, written = Path.write_bytes, []

    def refuse_the_graph(path: Path, data: bytes) -> int:
        if path.parent.parent == private_tmp:
            if path.name == "model.onnx":
                raise OSError(errno.ENOSPC, "No space left on device")
            written.append(path.name)
        return write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", refuse_the_graph)

    # Then both files were handed over from memory and the published model answers
    top = predictions(onnx_service(location))
    assert written == []
    assert top[0]["label"] == "green" and top[0]["score"] > 0.5
    assert list(private_tmp.iterdir()) == []


def test_a_failed_check_leaves_nothing_in_the_prefetch(
    store_root: Path, model_bucket: ModelBucket, tmp_path: Path
) -> None:
    # Given an S3 version whose model.onnx was replaced (same size, other bytes)
    copy = tmp_path / "altered"
    copy_local(store_root, copy)
    graph = copy / onnx_key("", NAME, "v1")
    graph.write_bytes(graph.read_bytes()[:-4] + b"XXXX")
    location = copy_store(copy, tmp_path / "altered-in-s3", model_bucket, "s3")
    bucket_store = S3ModelStore(model_bucket.name, location.store_uri.split("/", 3)[3])
    prefetching = PrefetchingStore(bucket_store, location, engine=ModelEngine.ONNXRUNTIME)

    # When the engine's load through the prefetch refuses it
    with pytest.raises(IntegrityError, match=r"model\.onnx has SHA-256"):
        load_onnx_model(location, threads=1, store=prefetching)

    # Then the prefetch holds none of the version's files (the weights' 40 MB included)
    assert prefetching._fetched == {}
    prefetching.finish()


def test_a_local_store_of_links_into_another_folder_serves(
    store_root: Path, tmp_path: Path, private_tmp: Path
) -> None:
    # Given a local store whose files are links into a content-addressed cache, each file in a
    # folder of its own (as git-annex lays them out: .git/annex/objects/xx/yy/KEY/KEY)
    location = copy_local(store_root, tmp_path / "linked")
    for key in (onnx_key("", NAME, "v1"), onnx_data_key("", NAME, "v1")):
        stored = Path(location.store_uri) / key
        digest = sha256_hex(stored.read_bytes())
        cached = tmp_path / "cache" / digest[:2] / digest / digest
        cached.parent.mkdir(parents=True)
        stored.replace(cached)
        stored.symlink_to(cached)

    # Then the onnxruntime engine serves it, and the private folder goes
    assert predictions(onnx_service(location))[0]["label"] == "green"
    assert list(private_tmp.iterdir()) == []
