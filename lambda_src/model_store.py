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

import contextlib
import io
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

from lambda_src.artifact import (
    LATEST,
    ONNX_DATA_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    Manifest,
    check_name,
    latest_key,
    manifest_key,
    s3_store_uri,
)
from lambda_src.contract import ENV_MODEL_NAME, ENV_MODEL_STORE, ENV_MODEL_VERSION
from lambda_src.deadlines import Deadline, DeadlineExceeded, call_within
from lambda_src.errors import (
    ArtifactNotFound,
    IntegrityError,
    ManifestError,
    Misconfigured,
    ModelArtifactError,
    NotPublished,
)

T = TypeVar("T")

# Every S3 call of the runtime is bounded, so a store that stops answering (a broken proxy or
# VPC endpoint) cannot hold init past Lambda's 10 s or a request past its timeout. boto3's
# defaults are 60 s to connect and 60 s per read, retried: minutes.
S3_CONNECT_TIMEOUT_S = 1.0
S3_READ_TIMEOUT_S = 2.0  # without a byte from the store; S3 starts answering in milliseconds
S3_MAX_ATTEMPTS = 2  # the first try and one retry
S3_MAX_RETRY_DELAY_S = 1.0  # botocore's standard mode waits at most 1 s before the retry
# The timeouts above bound each wait for a byte; a store that answers and then sends a byte a
# second never trips them. So each call also has a total bound, whatever the store does: 7 s,
# what its attempts could take if the store did not answer at all.
STORE_CALL_BOUND_S = S3_MAX_ATTEMPTS * (S3_CONNECT_TIMEOUT_S + S3_READ_TIMEOUT_S) + S3_MAX_RETRY_DELAY_S

# One GET stream is bandwidth-bound per connection, so the weights are read as byte ranges in
# parallel (AWS's guidance for throughput: 8-16 MB parts). The first part's answer gives the size.
PART_BYTES = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 8
# A ranged read makes its calls in two steps: the first part (a call like any other), then the
# rest concurrently with one attempt each (a failed part fails the read, and stops the parts
# not started); the whole read is over within 10 s, whatever the store does.
PART_MAX_ATTEMPTS = 1
RANGED_READ_BOUND_S = STORE_CALL_BOUND_S + PART_MAX_ATTEMPTS * (S3_CONNECT_TIMEOUT_S + S3_READ_TIMEOUT_S)
# All the reads of one model load together (LATEST, the manifest, the weights). At init they
# start before torch is imported (lambda_src/prefetch.py) and end within 7 s of that, so init
# ends inside Lambda's 10 s; any other load (a request's retry, a batch) gives up reading after
# 12 s, inside the function's timeout (20 s by default) with time left to build the model.
MODEL_READ_BOUND_S = 7.0
LOAD_READ_BOUND_S = 12.0
MODEL_FILES = (WEIGHTS_FILE, ONNX_FILE, ONNX_DATA_FILE)
# A LATEST pointer or a manifest is a few kB: anything over this is refused before it is read.
MAX_SMALL_OBJECT_BYTES = 1024 * 1024


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

    def read(self, key: str, *, size: int | None = None) -> bytes:
        """The object's bytes; with `size`, an object of another size fails before it is read."""
        ...

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

    def read(self, key: str, *, size: int | None = None) -> bytes:
        with self.open(key, size=size) as file:
            try:
                return file.read()
            except OSError as error:
                raise ModelArtifactError(f"cannot read {self.describe(key)}: {error.strerror}") from None

    def open(self, key: str, *, size: int | None = None) -> io.BufferedReader:
        """The file at `key` opened for reading, its size checked first (as `read` checks it)."""
        try:
            file = self.path(key).open("rb")
        except FileNotFoundError:
            raise ArtifactNotFound(f"{self.describe(key)} does not exist") from None
        except OSError as error:
            raise ModelArtifactError(f"cannot read {self.describe(key)}: {error.strerror}") from None
        try:
            check_size(self.describe(key), os.fstat(file.fileno()).st_size, size, key)
        except BaseException:
            file.close()
            raise
        return file

    def path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def describe(self, key: str) -> str:
        return str(self.root / key)


def check_digest(
    description: str, actual: str, expected: str, *, why: str = "the file is corrupt or was replaced"
) -> None:
    """Refuse an object whose SHA-256 is not the manifest's; `why` ends the message."""
    if actual != expected:
        raise IntegrityError(f"{description} has SHA-256 {actual} but the manifest says {expected}: {why}")


def check_size(description: str, actual: int, expected: int | None, key: str) -> None:
    """Refuse an object of the wrong size (the manifest's, for the weights) before reading it.

    Without an expected size only the model files (weights, ONNX export) may be large: a pointer
    or manifest over MAX_SMALL_OBJECT_BYTES is refused.
    """
    if expected is not None and actual != expected:
        raise IntegrityError(
            f"{description} is {actual} bytes but the manifest says {expected}: "
            "the upload is incomplete or the object was replaced"
        )
    if expected is None and not _is_model_file(key) and actual > MAX_SMALL_OBJECT_BYTES:
        raise ManifestError(
            f"{description} is {actual:,} bytes, more than a pointer or manifest ever is "
            f"({MAX_SMALL_OBJECT_BYTES:,})"
        )


def _is_model_file(key: str) -> bool:
    """The weights or the ONNX export's files: the large objects, read in parallel parts into one buffer."""
    return any(key.endswith(f"/{name}") or key == name for name in MODEL_FILES)


class BoundedCall:
    """One bounded store call: the responses it is reading, so giving up can cut them off."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: list[Any] = []
        self.given_up = False

    def reading(self, response: dict[str, Any]) -> dict[str, Any]:
        """Register a GET's answer whose body is about to be read; cut it off if the call was given up."""
        with self._lock:
            self._bodies.append(response["Body"])
            given_up = self.given_up
        if given_up:
            _cut_off(response["Body"])
        return response

    def give_up(self) -> None:
        with self._lock:
            self.given_up = True
            bodies = list(self._bodies)
        for body in bodies:
            _cut_off(body)


def cut_off_at(bound_s: float, work: Callable[[BoundedCall], T], *, name: str) -> T:
    """`work(call)`'s answer within `bound_s` seconds in total, else DeadlineExceeded.

    The answers `work` registers with `call.reading` are cut off at the bound, so the thread
    left reading a dripping body ends soon too.
    """
    call = BoundedCall()
    return call_within(bound_s, lambda: work(call), give_up=call.give_up, name=name)


def _cut_off(body: Any) -> None:
    """End a body being read on another thread: its next read gets end-of-stream or an error.

    urllib3 2's `shutdown()` shuts the socket down for reading (wakes a blocked read, frees no
    file descriptor another thread could reuse); older urllib3 and in-memory bodies close.
    """
    raw = getattr(body, "_raw_stream", None)
    # Already closed, released or finished: nothing left to cut off.
    with contextlib.suppress(Exception):
        if raw is not None and callable(getattr(raw, "shutdown", None)):
            raw.shutdown()
        else:
            body.close()


class S3ModelStore:
    """A model store under `s3://bucket/prefix`; every call ends within its bound, whatever S3 does."""

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
        return _configured_client(S3_MAX_ATTEMPTS)

    @property
    def part_client(self) -> Any:
        """The client for a ranged read's later parts: one attempt each (RANGED_READ_BOUND_S)."""
        if self._part_client is None:
            self._part_client = _configured_client(PART_MAX_ATTEMPTS)
        return self._part_client

    def close(self) -> None:
        """Close the clients' connections; the next read makes new clients (and resolves credentials).

        A client given to the store is kept (its connections closed): its owner chose it.
        """
        for client in {id(c): c for c in (self._client, self._part_client) if c is not None}.values():
            client.close()
        if not self._client_given:
            self._client = self._part_client = None

    def read(self, key: str, *, size: int | None = None) -> bytes:
        """The object at `key`: a model file in parallel parts, anything else (small) in one GET."""
        if _is_model_file(key):
            return self.read_in_parts(key, size=size)
        return self._bounded(key, STORE_CALL_BOUND_S, lambda call: self._read_whole(call, key, size))

    def read_in_parts(self, key: str, *, size: int | None = None) -> bytes:
        """The object at `key`, read with up to PARTS_IN_FLIGHT ranged GETs of PART_BYTES at once."""
        return self._bounded(key, RANGED_READ_BOUND_S, lambda call: self._read_parts(call, key, size))

    def exists(self, key: str) -> bool:
        def head(call: BoundedCall) -> bool:
            try:
                with self._errors(key):
                    self.client.head_object(Bucket=self.bucket, Key=key)
            except ArtifactNotFound:
                return False
            return True

        return self._bounded(key, STORE_CALL_BOUND_S, head)

    def _bounded(self, key: str, bound_s: float, work: Callable[[BoundedCall], T]) -> T:
        """`work`'s answer within `bound_s` seconds in total, else ModelArtifactError (its reads cut off)."""
        try:
            return cut_off_at(bound_s, work, name="s3-call")
        except DeadlineExceeded:
            raise ModelArtifactError(
                f"cannot read {self.describe(key)}: the store did not answer within {bound_s:g} s"
            ) from None

    def _read_whole(self, call: BoundedCall, key: str, size: int | None) -> bytes:
        with self._errors(key):
            response = call.reading(self.client.get_object(Bucket=self.bucket, Key=key))
            with response["Body"] as body:
                check_size(self.describe(key), int(response["ContentLength"]), size, key)
                data: bytes = body.read()
                return data

    def _read_parts(self, call: BoundedCall, key: str, size: int | None) -> bytes:
        with self._errors(key):
            first = call.reading(
                self.client.get_object(Bucket=self.bucket, Key=key, Range=_byte_range(0, PART_BYTES))
            )
            whole_size, first_length = _object_size(first), int(first["ContentLength"])
            try:
                check_size(self.describe(key), whole_size, size, key)  # before a byte is buffered
            except ModelArtifactError:
                first["Body"].close()
                raise
            # The parts land in a BytesIO's own buffer, whose getvalue() then hands that buffer
            # over as bytes: no second copy of the weights (a bytearray would need one).
            buffer = io.BytesIO()
            if whole_size:
                buffer.seek(whole_size - 1)
                buffer.write(b"\0")
            with buffer.getbuffer() as whole:
                _read_into(first, whole, 0)
                starts = range(first_length, whole_size, PART_BYTES)
                _each_in_parallel(
                    starts, lambda start: self._get_part(call, key, first["ETag"], whole, start), call
                )
        return buffer.getvalue()

    def _get_part(self, call: BoundedCall, key: str, etag: str, whole: memoryview, start: int) -> None:
        """Read the part at `start` into `whole`, only from the object's version tagged `etag`."""
        length = min(PART_BYTES, len(whole) - start)
        response = call.reading(
            self.part_client.get_object(
                Bucket=self.bucket, Key=key, Range=_byte_range(start, length), IfMatch=etag
            )
        )
        _read_into(response, whole, start)

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


def _configured_client(attempts: int) -> Any:
    """The bounded client, or Misconfigured: the environment's AWS settings cannot make one."""
    try:
        return bounded_s3_client(attempts=attempts)
    except Exception as error:  # botocore raises ValueError and its own types for bad settings
        raise Misconfigured(f"cannot make an S3 client from the function's AWS settings: {error}") from None


def _each_in_parallel(items: Iterable[int], work: Callable[[int], None], call: BoundedCall) -> None:
    """`work(item)` for every item, PARTS_IN_FLIGHT at a time on daemon threads; the first error is raised.

    After a failure (or once the call is given up) the items not started are never worked on.
    Daemon threads, not an executor's: a part the store holds up must not hold up the exit.
    """
    pending = iter(items)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                item = None if errors or call.given_up else next(pending, None)
            if item is None:
                return
            try:
                work(item)
            except BaseException as error:
                with lock:
                    errors.append(error)
                return

    threads = [threading.Thread(target=worker, name="s3-part", daemon=True) for _ in range(PARTS_IN_FLIGHT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # each part's call is bounded, and giving up the call cuts them off
    if errors:
        raise errors[0]


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


class BoundedStore:
    """A store whose reads, all together, end by one deadline: what one model load may spend reading.

    Each read runs on its own thread and is given up when the deadline passes, so even a store
    whose own calls are not bounded (a folder on a network file system) cannot hold a load.
    """

    def __init__(self, store: ModelStore, deadline: Deadline) -> None:
        self.store = store
        self.prefix = store.prefix
        self.store_uri = store.store_uri
        self.deadline = deadline

    def read(self, key: str, *, size: int | None = None) -> bytes:
        return self.within(key, lambda: self.store.read(key, size=size))

    def exists(self, key: str) -> bool:
        return self.within(key, lambda: self.store.exists(key))

    def describe(self, key: str) -> str:
        return self.store.describe(key)

    def within(self, key: str, work: Callable[[], T]) -> T:
        """`work`'s answer, or ModelArtifactError once the load's deadline has passed."""
        try:
            return call_within(self.deadline.remaining(), work, name="model-read")
        except DeadlineExceeded:
            raise ModelArtifactError(
                f"cannot read {self.describe(key)}: the store did not answer within the "
                f"{self.deadline.seconds:g} s a model load may spend reading"
            ) from None


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


def open_model_store(store_uri: str) -> LocalModelStore | S3ModelStore:
    """`open_store` for serving: a URI no reader understands is a ModelArtifactError (a 503 reason)."""
    try:
        return open_store(store_uri)
    except ValueError as error:
        raise ModelArtifactError(str(error)) from None


def read_manifest(store: ModelStore, model_name: str, version: str) -> Manifest:
    """The manifest of `model_name` `version`, checked to describe exactly that version."""
    key = manifest_key(store.prefix, model_name, version)
    try:
        manifest = Manifest.from_json(store.read(key))
    except ManifestError as error:
        raise ManifestError(f"{store.describe(key)}: {error}") from None
    if (manifest.model_name, manifest.version) != (model_name, version):
        raise ManifestError(
            f"{store.describe(key)} describes {manifest.model_name!r} version {manifest.version!r}, "
            f"not {model_name!r} version {version!r}"
        )
    return manifest
