"""Publishing to moto S3 and to a local folder: exact objects, write order, immutability, failures."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shutil
import stat
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from endpoint_client.stack_outputs import StackError, resolve_store
from lambda_src.artifact import Manifest
from lambda_src.errors import IntegrityError, VersionExists
from lambda_src.loader import load_model
from lambda_src.model_store import ModelLocation
from model_training.publishing import PublishError, list_versions, next_version, publish, read_output

from .conftest import BUCKET, MODEL_NAME, PREFIX, REGION, Bucket

V1_KEYS = [
    f"{PREFIX}/{MODEL_NAME}/LATEST",
    f"{PREFIX}/{MODEL_NAME}/v1/manifest.json",
    f"{PREFIX}/{MODEL_NAME}/v1/model.pt",
]


def record_calls(client: Any) -> list[tuple[str, str]]:
    """(operation, key) of every S3 call `client` makes from now on, in order."""
    calls: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params.get("Key", "")))

    client.meta.events.register("provide-client-params.s3.*", record)
    return calls


def test_publishing_writes_exactly_the_contract_objects(bucket: Bucket, tiny_output: Path) -> None:
    # When a training output is published to an empty store
    published = publish(tiny_output, bucket.store_uri, progress=False, s3_client=bucket.client)
    # Then the bucket holds the weights, the manifest and LATEST, and nothing else
    assert bucket.keys() == V1_KEYS
    assert published.version == "v1"
    assert sorted(published.keys) == V1_KEYS
    assert bucket.read(f"{PREFIX}/{MODEL_NAME}/LATEST") == b"v1"
    weights = bucket.read(f"{PREFIX}/{MODEL_NAME}/v1/model.pt")
    assert weights == (tiny_output / "model.pt").read_bytes()
    # and the manifest names this version, with the weights' hash and size
    manifest = Manifest.from_json(bucket.read(f"{PREFIX}/{MODEL_NAME}/v1/manifest.json"))
    assert (manifest.model_name, manifest.version) == (MODEL_NAME, "v1")
    assert manifest.weights_sha256 == hashlib.sha256(weights).hexdigest()
    assert manifest.weights_size_bytes == len(weights)
    # and S3 stored the SHA-256 the upload was checked against
    head = bucket.client.head_object(
        Bucket=BUCKET, Key=f"{PREFIX}/{MODEL_NAME}/v1/model.pt", ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(weights).digest()).decode()


def test_latest_moves_only_after_the_version_is_written_and_checked(
    bucket: Bucket, tiny_output: Path
) -> None:
    calls = record_calls(bucket.client)
    publish(tiny_output, bucket.store_uri, progress=False, s3_client=bucket.client)
    writes_and_checks = [
        (operation, key.rsplit("/", 1)[-1]) for operation, key in calls if operation != "ListObjectsV2"
    ]
    assert writes_and_checks == [
        ("PutObject", "model.pt"),
        ("HeadObject", "model.pt"),
        ("PutObject", "manifest.json"),
        ("HeadObject", "manifest.json"),
        ("PutObject", "LATEST"),
    ]


def test_a_failure_mid_publish_leaves_latest_on_the_previous_version(
    bucket: Bucket, tiny_output: Path
) -> None:
    # Given v1 published, and a client whose connection drops when the v2 manifest is sent
    client = boto3.client("s3", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
    publish(tiny_output, bucket.store_uri, progress=False, s3_client=client)

    def drop_manifest_upload(request: Any, **_: Any) -> None:
        if request.url.split("?")[0].endswith("/v2/manifest.json") and request.method == "PUT":
            raise EndpointConnectionError(endpoint_url=request.url)

    client.meta.events.register("before-send.s3.PutObject", drop_manifest_upload)
    # When v2 is published
    with pytest.raises(PublishError, match=r"v2/manifest\.json"):
        publish(tiny_output, bucket.store_uri, progress=False, s3_client=client)
    # Then LATEST still names v1, the half-written v2 was removed, and v1 is the only version
    assert bucket.read(f"{PREFIX}/{MODEL_NAME}/LATEST") == b"v1"
    assert bucket.keys() == V1_KEYS
    assert list_versions(bucket.store_uri, MODEL_NAME, s3_client=bucket.client).versions == ("v1",)
    # and once the connection is back, v2 publishes normally
    client.meta.events.unregister("before-send.s3.PutObject", drop_manifest_upload)
    assert publish(tiny_output, bucket.store_uri, progress=False, s3_client=client).version == "v2"
    assert bucket.read(f"{PREFIX}/{MODEL_NAME}/LATEST") == b"v2"


def test_republishing_an_existing_version_is_refused(bucket: Bucket, tiny_output: Path) -> None:
    publish(tiny_output, bucket.store_uri, version="2024-06-01", progress=False, s3_client=bucket.client)
    key = f"{PREFIX}/{MODEL_NAME}/2024-06-01/model.pt"
    with pytest.raises(VersionExists, match="already exists"):
        publish(tiny_output, bucket.store_uri, version="2024-06-01", progress=False, s3_client=bucket.client)
    # Nothing was written again: the object has its one original S3 version
    assert len(bucket.client.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]) == 1


def test_a_concurrent_publisher_of_the_same_version_cannot_be_overwritten(
    bucket: Bucket, tiny_output: Path
) -> None:
    # Given another publisher that writes v1/model.pt just before our upload of it
    key = f"{PREFIX}/{MODEL_NAME}/v1/model.pt"
    other = boto3.client("s3", region_name=REGION)

    def race(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key:
            other.put_object(Bucket=BUCKET, Key=key, Body=b"the other publisher's weights")

    client = boto3.client("s3", region_name=REGION)
    client.meta.events.register("provide-client-params.s3.PutObject", race)
    # When we publish, the conditional write (If-None-Match: *) fails
    with pytest.raises(VersionExists, match="published concurrently"):
        publish(tiny_output, bucket.store_uri, progress=False, s3_client=client)
    # Then the other publisher's object is intact and LATEST was never written
    assert bucket.read(key) == b"the other publisher's weights"
    assert bucket.keys() == [key]


def test_automatic_versions_count_up_and_skip_taken_names(bucket: Bucket, tiny_output: Path) -> None:
    assert next_version(set()) == "v1"
    assert next_version({"v1", "v9", "v10", "2024-06-01", "va"}) == "v11"
    # An incomplete version (weights, no manifest) is taken but not listed
    bucket.client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{MODEL_NAME}/v1/model.pt", Body=b"partial")
    published = publish(tiny_output, bucket.store_uri, progress=False, s3_client=bucket.client)
    listing = list_versions(bucket.store_uri, MODEL_NAME, s3_client=bucket.client)
    assert published.version == "v2"
    assert (listing.versions, listing.latest) == (("v2",), "v2")


def test_a_missing_bucket_is_a_readable_error(bucket: Bucket, tiny_output: Path) -> None:
    with pytest.raises(PublishError, match="the bucket does not exist"):
        publish(tiny_output, "s3://no-such-bucket-here/models", progress=False)


def test_the_local_store_has_the_bucket_layout_and_the_loader_reads_it(
    bucket: Bucket, tiny_output: Path, tmp_path: Path
) -> None:
    # When the same output is published to S3 and to a local folder
    publish(tiny_output, bucket.store_uri, progress=False, s3_client=bucket.client)
    store = tmp_path / "store"
    publish(tiny_output, str(store), progress=False)
    # Then the folder holds the same objects under the same keys (relative to the store root)
    local_keys = sorted(str(path.relative_to(store)) for path in store.rglob("*") if path.is_file())
    assert local_keys == [key.removeprefix(f"{PREFIX}/") for key in V1_KEYS]
    assert (store / MODEL_NAME / "LATEST").read_text() == "v1"
    # and the serving side's LocalModelStore loads it
    loaded = load_model(ModelLocation(str(store), MODEL_NAME), torch_threads=1)
    assert loaded.manifest.version == "v1"


def test_everyone_may_read_a_local_store_so_the_images_non_root_user_can_serve_it(
    tiny_output: Path, tmp_path: Path
) -> None:
    # When a model is published to a local folder (e.g. one mounted into the image)
    store = tmp_path / "store"
    publish(tiny_output, str(store), progress=False)
    # Then other users may read every file and enter every folder publish wrote
    written = [store / MODEL_NAME, *(store / MODEL_NAME).rglob("*")]
    assert {path.name for path in written} >= {"LATEST", "v1", "model.pt", "manifest.json"}
    for path in written:
        mode = path.stat().st_mode
        assert mode & stat.S_IROTH, f"{path} is {stat.filemode(mode)}"
        if path.is_dir():
            assert mode & stat.S_IXOTH, f"{path} is {stat.filemode(mode)}"


def test_the_local_store_refuses_an_existing_version_and_leaves_no_staging_folders(
    tiny_output: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    publish(tiny_output, str(store), progress=False)
    before = (store / MODEL_NAME / "v1" / "model.pt").stat().st_mtime_ns
    with pytest.raises(VersionExists, match="already exists"):
        publish(tiny_output, str(store), version="v1", progress=False)
    assert (store / MODEL_NAME / "v1" / "model.pt").stat().st_mtime_ns == before
    assert sorted(path.name for path in (store / MODEL_NAME).iterdir()) == ["LATEST", "v1"]


def test_an_output_folder_whose_weights_do_not_match_its_manifest_is_refused(
    tiny_output: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "output"
    shutil.copytree(tiny_output, folder)
    (folder / "model.pt").write_bytes(b"other weights")
    with pytest.raises(IntegrityError, match="does not match"):
        read_output(folder)
    with pytest.raises(PublishError, match="does not exist"):
        read_output(tmp_path / "nowhere")


def create_stack(outputs: dict[str, str], name: str = "ImageClassifierInference") -> None:
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=name, TemplateBody=json.dumps(template)
    )


def test_the_store_is_found_from_the_deployed_stack_outputs(bucket: Bucket) -> None:
    create_stack({"ModelStoreUri": bucket.store_uri, "ModelBucketName": BUCKET})
    assert resolve_store(None) == bucket.store_uri
    assert resolve_store("stack:ImageClassifierInference") == bucket.store_uri
    assert resolve_store("s3://elsewhere/models") == "s3://elsewhere/models"


def test_a_missing_stack_or_output_is_a_readable_error() -> None:
    with mock_aws():
        with pytest.raises(StackError, match="Stack with id Missing does not exist"):
            resolve_store("stack:Missing")
        create_stack({"SomethingElse": "x"}, name="NotInference")
        with pytest.raises(StackError, match="has no ModelStoreUri output"):
            resolve_store("stack:NotInference")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_weights_holding_nan_or_infinity_are_never_published(
    bucket: Bucket, tiny_output: Path, tmp_path: Path, value: float
) -> None:
    # Given a training output whose weights hold one non-finite value (manifest hash matching)
    import torch

    from lambda_src.artifact import sha256_hex

    state_dict = torch.load(tiny_output / "model.pt", weights_only=True)
    name = next(key for key, tensor in state_dict.items() if tensor.is_floating_point())
    state_dict[name].view(-1)[0] = value
    folder = tmp_path / "diverged"
    folder.mkdir()
    torch.save(state_dict, folder / "model.pt")
    weights = (folder / "model.pt").read_bytes()
    manifest = Manifest.from_json((tiny_output / "manifest.json").read_bytes())
    manifest = dataclasses.replace(
        manifest, weights_sha256=sha256_hex(weights), weights_size_bytes=len(weights)
    )
    (folder / "manifest.json").write_bytes(manifest.to_json())
    # When it is published, Then it is refused naming the tensor, and nothing is written
    with pytest.raises(IntegrityError, match=f"holds NaN or infinite values \\(in {name}\\)"):
        publish(folder, f"s3://{BUCKET}/{PREFIX}", progress=False, s3_client=bucket.client)
    assert bucket.keys() == []
