"""Model stores, torch-free: where the model lives, how its objects are read, which version is served.

One parser for store URIs (`s3://bucket/prefix`, a folder, `file://folder`), the local
and S3 stores (read, exists, describe), and version resolution (`latest` or pinned).
The publishers in `model_training.publishing` extend these stores.

The function's environment names the model (set by the CDK stack, or by the local
endpoint):

    MODEL_STORE    s3://<bucket>/<prefix>  or a local folder path
    MODEL_NAME     the model's name under the store
    MODEL_VERSION  a published version, or "latest" to follow the LATEST pointer

boto3 honours AWS_ENDPOINT_URL_S3, so the same code reads moto or MinIO locally.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from lambda_src.artifact import LATEST, WEIGHTS_FILE, check_name, latest_key, manifest_key, s3_store_uri
from lambda_src.contract import ENV_MODEL_NAME, ENV_MODEL_STORE, ENV_MODEL_VERSION
from lambda_src.errors import ArtifactNotFound, ManifestError, ModelArtifactError, NotPublished

# Every S3 call of the runtime is bounded, so a store that stops answering (a broken proxy or
# VPC endpoint) cannot hold init past Lambda's 10 s or a request past its timeout. boto3's
# defaults are 60 s to connect and 60 s per read, retried: minutes.
S3_CONNECT_TIMEOUT_S = 1.0
S3_READ_TIMEOUT_S = 2.0  # without a byte from the store; S3 starts answering in milliseconds
S3_MAX_ATTEMPTS = 2  # the first try and one retry
S3_MAX_RETRY_DELAY_S = 1.0  # botocore's standard mode waits at most 1 s before the retry
# The longest one S3 call can take when the store does not answer: 7 s.
STORE_CALL_BOUND_S = S3_MAX_ATTEMPTS * (S3_CONNECT_TIMEOUT_S + S3_READ_TIMEOUT_S) + S3_MAX_RETRY_DELAY_S

# One GET stream is bandwidth-bound per connection, so the weights are read as byte ranges in
# parallel (AWS's guidance for throughput: 8-16 MB parts). The first part's answer gives the size.
PART_BYTES = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 8
# A ranged read makes its calls in two steps: the first part (a call like any other), then the
# rest concurrently with one attempt each (a failed part fails the read, and cancels the parts
# not started), so a store that answers the first part and then stops costs at most 10 s.
PART_MAX_ATTEMPTS = 1
RANGED_READ_BOUND_S = STORE_CALL_BOUND_S + PART_MAX_ATTEMPTS * (S3_CONNECT_TIMEOUT_S + S3_READ_TIMEOUT_S)


# What S3 answers for a key that is not there. Without s3:ListBucket (least privilege, as the
# function's roles have it) S3 answers 403 for a missing key, so 403 counts as missing too.
S3_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "AccessDenied", "403"})


def s3_error_code(error: Any) -> str:
    """The S3 error code of a botocore ClientError ("" if it has none)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def bounded_s3_client(*, attempts: int = S3_MAX_ATTEMPTS) -> Any:
    """The runtime's S3 client: every call gives up within STORE_CALL_BOUND_S (with 2 attempts)."""
    import boto3  # imported on first use: local stores never pay for it
    from botocore.config import Config

    bounded = Config(
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )
    return boto3.client("s3", config=bounded)


class ModelStore(Protocol):
    """Read access to the objects of a model store, by key relative to the store root."""

    prefix: str
    store_uri: str

    def read(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def describe(self, key: str) -> str: ...


@dataclass(frozen=True)
class StoreUri:
    """A parsed store URI: an S3 bucket and key prefix, or a local folder (`bucket` None)."""

    bucket: str | None
    path: str  # the key prefix in the bucket (no surrounding slashes), or the folder


def parse_store_uri(store_uri: str) -> StoreUri:
    """`s3://bucket/prefix`, a folder path or `file://folder`; ValueError for anything else."""
    if not store_uri:
        raise ValueError("not set (give s3://bucket/prefix or a local folder)")
    parsed = urlparse(store_uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{store_uri!r} names no bucket: use s3://bucket/prefix")
        return StoreUri(parsed.netloc, parsed.path.strip("/"))
    if parsed.scheme == "file":
        return StoreUri(None, parsed.path)
    if parsed.scheme:
        raise ValueError(f"unsupported model store {store_uri!r}: use s3://bucket/prefix or a folder")
    return StoreUri(None, store_uri)


@dataclass(frozen=True)
class ModelLocation:
    """Which model to serve: a store URI, a model name and a version selector."""

    store_uri: str
    model_name: str
    version: str = LATEST

    def __post_init__(self) -> None:
        if not self.store_uri:
            raise ValueError(f"{ENV_MODEL_STORE} is not set: give s3://bucket/prefix or a local folder")
        check_name("model name", self.model_name)
        if self.version != LATEST:
            check_name("version", self.version)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ModelLocation:
        """The location the environment names; a ValueError names the variable to fix."""
        env = os.environ if environ is None else environ
        store_uri = env.get(ENV_MODEL_STORE, "")
        model_name = env.get(ENV_MODEL_NAME, "")
        version = env.get(ENV_MODEL_VERSION, LATEST) or LATEST
        _check_variable(ENV_MODEL_STORE, lambda: parse_store_uri(store_uri))  # set, a known scheme, a bucket
        _check_variable(ENV_MODEL_NAME, lambda: check_name("model name", model_name))
        _check_variable(ENV_MODEL_VERSION, lambda: version == LATEST or check_name("version", version))
        return cls(store_uri=store_uri, model_name=model_name, version=version)


def _check_variable(variable: str, check: Callable[[], object]) -> None:
    try:
        check()
    except ValueError as error:
        raise ValueError(f"{variable}: {error}") from None


class LocalModelStore:
    """A model store in a local folder, laid out exactly like the bucket."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = ""
        self.store_uri = str(root)

    def read(self, key: str) -> bytes:
        path = self.root / key
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(f"{self.describe(key)} does not exist") from None
        except OSError as error:
            raise ModelArtifactError(f"cannot read {self.describe(key)}: {error.strerror}") from None

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def describe(self, key: str) -> str:
        return str(self.root / key)


class S3ModelStore:
    """A model store under `s3://bucket/prefix`."""

    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.store_uri = s3_store_uri(bucket, self.prefix)
        self._client = client
        self._part_client = client  # a client given to the store serves the parts too
        self._client_given = client is not None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> Any:
        return bounded_s3_client()

    @property
    def part_client(self) -> Any:
        """The client for a ranged read's later parts: one attempt each (RANGED_READ_BOUND_S)."""
        if self._part_client is None:
            self._part_client = bounded_s3_client(attempts=PART_MAX_ATTEMPTS)
        return self._part_client

    def close(self) -> None:
        """Close the clients' connections; the next read makes new clients (and resolves credentials).

        A client given to the store is kept (its connections closed): its owner chose it.
        """
        for client in {id(c): c for c in (self._client, self._part_client) if c is not None}.values():
            client.close()
        if not self._client_given:
            self._client = self._part_client = None

    def read(self, key: str) -> bytes:
        """The object at `key`: the weights in parallel parts, anything else (small) in one GET."""
        if key.endswith(f"/{WEIGHTS_FILE}") or key == WEIGHTS_FILE:
            return self.read_in_parts(key)
        with self._errors(key):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def read_in_parts(self, key: str) -> bytes:
        """The object at `key`, read with up to PARTS_IN_FLIGHT ranged GETs of PART_BYTES at once."""
        from concurrent.futures import ThreadPoolExecutor

        with self._errors(key):
            first = self.client.get_object(Bucket=self.bucket, Key=key, Range=_byte_range(0, PART_BYTES))
            size, first_length = _object_size(first), int(first["ContentLength"])
            # The parts land in a BytesIO's own buffer, whose getvalue() then hands that buffer
            # over as bytes: no second copy of the weights (a bytearray would need one).
            buffer = io.BytesIO()
            if size:
                buffer.seek(size - 1)
                buffer.write(b"\0")
            with buffer.getbuffer() as whole:
                _read_into(first, whole, 0)
                pool = ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix="s3-part")
                try:
                    starts = range(first_length, size, PART_BYTES)
                    parts = [
                        pool.submit(self._get_part, key, first["ETag"], whole, start) for start in starts
                    ]
                    for part in parts:
                        part.result()
                finally:  # after a failure, the parts not started yet are never requested
                    pool.shutdown(wait=True, cancel_futures=True)
        return buffer.getvalue()

    def _get_part(self, key: str, etag: str, whole: memoryview, start: int) -> None:
        """Read the part at `start` into `whole`, only from the object's version tagged `etag`."""
        length = min(PART_BYTES, len(whole) - start)
        response = self.part_client.get_object(
            Bucket=self.bucket, Key=key, Range=_byte_range(start, length), IfMatch=etag
        )
        _read_into(response, whole, start)

    def exists(self, key: str) -> bool:
        try:
            with self._errors(key):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except ArtifactNotFound:
            return False
        return True

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """boto3's errors about `key` as ArtifactNotFound (missing) or ModelArtifactError (the rest)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as error:
            code = s3_error_code(error)
            if code in S3_MISSING_CODES:
                raise ArtifactNotFound(
                    f"{self.describe(key)} does not exist or is not readable ({code})"
                ) from None
            raise ModelArtifactError(f"cannot read {self.describe(key)}: {code}") from None
        except BotoCoreError as error:
            raise ModelArtifactError(f"cannot read {self.describe(key)}: {error}") from None

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def _byte_range(start: int, length: int) -> str:
    return f"bytes={start}-{start + length - 1}"


def _read_into(response: dict[str, Any], whole: memoryview, start: int) -> None:
    """Copy a ranged GET's body into `whole` at `start` (botocore checks it is ContentLength long)."""
    with whole[start : start + int(response["ContentLength"])] as target:
        filled = 0
        for chunk in response["Body"].iter_chunks(1024 * 1024):
            target[filled : filled + len(chunk)] = chunk
            filled += len(chunk)


def _object_size(response: dict[str, Any]) -> int:
    """The whole object's size from a ranged GET's answer (`Content-Range: bytes 0-99/1234`)."""
    content_range = response.get("ContentRange")
    if content_range is None:  # a store that ignores Range sends the whole object
        return int(response["ContentLength"])
    return int(content_range.rpartition("/")[2])


def resolve_version(store: ModelStore, model_name: str, version: str) -> str:
    """The pinned `version`, or the one the model's LATEST pointer names when it is "latest"."""
    if version != LATEST:
        return check_name("version", version)
    key = latest_key(store.prefix, model_name)
    try:
        raw = store.read(key)
    except ArtifactNotFound as error:
        raise NotPublished(f"model {model_name!r} has no published version: {error}") from None
    try:
        return check_name("version", raw.decode("utf-8").strip())
    except (UnicodeDecodeError, ValueError) as error:
        raise ManifestError(f"{store.describe(key)} does not name a version: {error}") from None


def published_version(store: ModelStore, model_name: str, version: str) -> str | None:
    """The version `version` selects ("latest" or pinned) if the store has it, else None."""
    try:
        resolved = resolve_version(store, model_name, version)
    except ArtifactNotFound:
        return None
    return resolved if store.exists(manifest_key(store.prefix, model_name, resolved)) else None


def open_store(store_uri: str) -> LocalModelStore | S3ModelStore:
    """A store for `s3://bucket/prefix` or a local folder path (plain or file://)."""
    parsed = parse_store_uri(store_uri)
    if parsed.bucket is not None:
        return S3ModelStore(parsed.bucket, parsed.path)
    return LocalModelStore(Path(parsed.path))
