"""The handler's S3 prefetch: the loader gets the same bytes, each fetched once, and the usual errors."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import torch

from lambda_src.errors import ArtifactNotFound
from lambda_src.loader import load_model
from lambda_src.model_store import ModelLocation, S3ModelStore
from lambda_src.prefetch import PrefetchingStore, prefetch_from_env
from tests.support.tiny_model import Publication

from .conftest import MODEL_NAME, PREFIX, ModelBucket


def counting_store(bucket: ModelBucket) -> tuple[S3ModelStore, list[str]]:
    """A real S3 store on the moto bucket, and the key of every object read it starts.

    An object read is a GetObject for the whole object or for its first part (the weights come
    in parts: the rest are of the same read).
    """
    client = boto3.client("s3", region_name="eu-west-1")
    keys: list[str] = []

    def count_reads(params: dict[str, str], **_: object) -> None:
        if params.get("Range", "bytes=0-").startswith("bytes=0-"):
            keys.append(params["Key"])

    client.meta.events.register("before-parameter-build.s3.GetObject", count_reads)
    return S3ModelStore(bucket.name, bucket.prefix, client=client), keys


def test_the_loader_reads_each_object_once_from_the_prefetch_and_builds_the_same_model(
    model_bucket: ModelBucket, published: Publication
) -> None:
    # Given a prefetch of the published model, started before anything asks for it
    location = model_bucket.location(MODEL_NAME)
    store, requested = counting_store(model_bucket)
    prefetching = PrefetchingStore(store, location)
    # When the model is loaded through it, and once more the ordinary way
    loaded = load_model(location, torch_threads=1, store=prefetching)
    fetched_by_prefetch = list(requested)
    reference = load_model(location, torch_threads=1)
    # Then LATEST, the manifest and the weights were each fetched once, and the model is the same
    assert sorted(fetched_by_prefetch) == sorted(
        f"{PREFIX}/{MODEL_NAME}/{name}" for name in ("LATEST", "v1/manifest.json", "v1/model.pt")
    )
    assert loaded.manifest == reference.manifest == published.manifest
    image = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded.network(image), reference.network(image))
    # And a second load (a retry) reads S3 again instead of finding nothing
    load_model(location, torch_threads=1, store=prefetching)
    assert len(requested) == 2 * len(fetched_by_prefetch)


def test_a_model_the_prefetch_cannot_find_fails_to_load_with_the_usual_error(
    model_bucket: ModelBucket, published: Publication
) -> None:
    location = model_bucket.location("never-published")
    store, requested = counting_store(model_bucket)
    with pytest.raises(ArtifactNotFound, match="'never-published' has no published version"):
        load_model(location, torch_threads=1, store=PrefetchingStore(store, location))
    # The loader got the prefetch's failure instead of asking again: a store that does not
    # answer costs init one bounded wait, not two.
    assert requested == [f"{PREFIX}/never-published/LATEST"]


def test_only_a_model_in_s3_is_prefetched(tmp_path: Path, model_bucket: ModelBucket) -> None:
    s3 = prefetch_from_env({"MODEL_STORE": f"s3://{model_bucket.name}/{PREFIX}", "MODEL_NAME": MODEL_NAME})
    assert isinstance(s3, PrefetchingStore)
    assert s3.location == ModelLocation(f"s3://{model_bucket.name}/{PREFIX}", MODEL_NAME)
    assert prefetch_from_env({"MODEL_STORE": str(tmp_path), "MODEL_NAME": MODEL_NAME}) is None
    assert prefetch_from_env({"MODEL_STORE": "s3://", "MODEL_NAME": MODEL_NAME}) is None  # no bucket
    assert prefetch_from_env({"MODEL_NAME": MODEL_NAME}) is None  # misconfigured: the service says so
