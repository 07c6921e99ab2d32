"""Model stores: one URI parser, `exists`, and which version a location selects, in a folder and in S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambda_src.artifact import s3_store_uri
from lambda_src.model_store import (
    LocalModelStore,
    ModelStore,
    S3ModelStore,
    StoreUri,
    open_store,
    parse_store_uri,
    published_version,
)
from tests.support.tiny_model import Publication, publish

from .conftest import ModelBucket


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("s3://bucket/models/", StoreUri("bucket", "models")),
        ("s3://bucket", StoreUri("bucket", "")),
        ("/srv/models", StoreUri(None, "/srv/models")),
        ("relative/store", StoreUri(None, "relative/store")),
        ("file:///srv/models", StoreUri(None, "/srv/models")),
    ],
)
def test_store_uris_parse_to_a_bucket_and_prefix_or_a_folder(uri: str, parsed: StoreUri) -> None:
    assert parse_store_uri(uri) == parsed


@pytest.mark.parametrize(
    ("bucket", "prefix", "uri"),
    [
        ("bucket", "models", "s3://bucket/models"),
        ("bucket", "/a/b/", "s3://bucket/a/b"),
        ("bucket", "", "s3://bucket"),
    ],
)
def test_the_s3_store_uri_is_written_one_way_and_parses_back(bucket: str, prefix: str, uri: str) -> None:
    assert s3_store_uri(bucket, prefix) == uri
    assert parse_store_uri(uri) == StoreUri(bucket, prefix.strip("/"))
    assert S3ModelStore(bucket, prefix).store_uri == uri


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("s3:///models", "names no bucket"),
        ("ftp://host/models", "unsupported model store 'ftp://host/models'"),
    ],
)
def test_other_store_uris_are_refused_with_a_reason(uri: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_store_uri(uri)


def test_open_store_gives_the_store_for_the_uri(tmp_path: Path) -> None:
    local = open_store(str(tmp_path))
    assert isinstance(local, LocalModelStore) and local.root == tmp_path and local.store_uri == str(tmp_path)
    s3 = open_store("s3://bucket/models/")
    assert isinstance(s3, S3ModelStore) and (s3.bucket, s3.prefix) == ("bucket", "models")
    assert s3.store_uri == "s3://bucket/models"


def check_versions(store: ModelStore, publication: Publication) -> None:
    """`exists` and `published_version` agree with what was published: colours v1, LATEST -> v1."""
    version = publication.manifest.version
    assert published_version(store, "colours", "latest") == version
    assert published_version(store, "colours", version) == version
    assert published_version(store, "colours", "v99") is None
    assert published_version(store, "nothing-here", "latest") is None


def test_a_local_store_knows_what_is_published(tmp_path: Path, tiny_weights: bytes) -> None:
    def write(key: str, data: bytes) -> None:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(data)

    publication = publish(write, prefix="", model_name="colours", version="v1", weights=tiny_weights)
    store = LocalModelStore(tmp_path)
    assert store.exists("colours/LATEST") and not store.exists("colours/v2/manifest.json")
    assert not store.exists("colours")  # a folder is not an object
    check_versions(store, publication)


def test_an_s3_store_knows_what_is_published(model_bucket: ModelBucket, published: Publication) -> None:
    store = open_store(model_bucket.location("colours").store_uri)
    assert store.exists(f"{model_bucket.prefix}/colours/LATEST")
    assert not store.exists(f"{model_bucket.prefix}/colours/v2/manifest.json")
    check_versions(store, published)
