"""Batch classification: image keys in, one result line per image out.

The same `BatchWorker` runs behind Step Functions' Distributed Map (lambda_src/batch_handler.py)
and on one machine (local_endpoint/batch_runner.py). It reads each image from a bucket or a
folder, bounded in size, through the serving path's decoding, preprocessing and model, and
answers every image with a line (docs/batch-result.schema.json):

    {"key": "...", "model": {"name", "version"}, "predictions": [{"label", "index", "score"}]}
    {"key": "...", "model": {"name", "version"}, "error": {"code", "message"}}

A bad image gets its error line; it never fails the batch. A job's model version is resolved
once, before the first batch, and each batch names it, so one job never mixes versions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lambda_src.artifact import LATEST, check_name
from lambda_src.contract import DEFAULT_TOP_K
from lambda_src.deadlines import Deadline, DeadlineExceeded
from lambda_src.engines import Classifier, load_classifier
from lambda_src.errors import ApiError, NotFound, PayloadTooLarge
from lambda_src.model_store import (
    S3_MISSING_CODES,
    STORE_CALL_BOUND_S,
    BoundedCall,
    ModelLocation,
    cut_off_at,
    open_store,
    resolve_version,
    s3_error_code,
)
from lambda_src.settings import RuntimeSettings

MAX_TOP_K = 20  # keeps each line, and a batch's returned lines, small (Step Functions: 256 KB per state)
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # a larger object is refused before its bytes are read
FORWARD_BATCH = 8  # input tensors per forward pass: bounds the memory of a batch of any size
# S3 answers each GET after tens of milliseconds, about as long as classifying an image takes:
# the images of a forward pass are read in parallel, so the CPU does not wait for each in turn.
READ_THREADS = 4
MAX_MESSAGE_CHARS = 300
# A batch stops reading images this long before its invocation's timeout: the last forward pass
# and the reply keep their time, and the batch answers with a line per image instead of timing out.
READ_RESERVE_FRACTION = 0.2
READ_RESERVE_MIN_S = 3.0


class ImageUnreadable(Exception):
    """The image exists but could not be read: a storage error, not the image's (nor an HTTP API error)."""

    code = "read_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# What becomes an image's error line: the HTTP API's client errors, and unreadable objects.
ImageError = ApiError | ImageUnreadable


class ImageSource(Protocol):
    """Where a batch's images are read from, by key."""

    def read(self, key: str, max_bytes: int) -> bytes: ...


@dataclass(frozen=True)
class FolderImages:
    """Images in a local folder; keys are paths relative to it, with '/'."""

    root: Path

    def read(self, key: str, max_bytes: int) -> bytes:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise NotFound(f"{key} is outside the input folder")
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise PayloadTooLarge(f"{key} is {size:,} bytes; the limit is {max_bytes:,}")
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{key} does not exist") from None
        except OSError as error:
            raise ImageUnreadable(f"cannot read {key}: {error.strerror}") from None

    def keys(self) -> Iterator[str]:
        """Every file under the folder (hidden ones excepted), in a stable order."""
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                yield relative.as_posix()


@dataclass(frozen=True)
class S3Images:
    """Images in one S3 bucket (any endpoint boto3 is pointed at), each read within a total bound.

    Every read ends within STORE_CALL_BOUND_S, whatever the store does (an answer that then
    drips a byte a second included), and none outlasts `deadline` (the batch's time for
    reading): an image not read by then gets its error line instead of holding the batch.
    """

    bucket: str
    client: Any
    deadline: Deadline | None = None

    def read(self, key: str, max_bytes: int) -> bytes:
        bound_s = STORE_CALL_BOUND_S
        if self.deadline is not None:
            if self.deadline.passed:
                raise ImageUnreadable(
                    f"s3://{self.bucket}/{key} was not read: the batch's "
                    f"{self.deadline.seconds:.0f} s for reading images ran out"
                )
            bound_s = min(bound_s, self.deadline.remaining())
        try:
            return cut_off_at(bound_s, lambda call: self._get(call, key, max_bytes), name="image-read")
        except DeadlineExceeded:
            raise ImageUnreadable(
                f"cannot read s3://{self.bucket}/{key}: the store did not answer within {bound_s:.3g} s"
            ) from None

    def _get(self, call: BoundedCall, key: str, max_bytes: int) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = call.reading(self.client.get_object(Bucket=self.bucket, Key=key))
            size = response["ContentLength"]
            if size > max_bytes:
                response["Body"].close()
                raise PayloadTooLarge(f"{key} is {size:,} bytes; the limit is {max_bytes:,}")
            with response["Body"] as body:
                data: bytes = body.read(max_bytes + 1)  # the caller refuses anything longer
                return data
        except ClientError as error:
            code = s3_error_code(error)
            if code in S3_MISSING_CODES:
                raise NotFound(
                    f"s3://{self.bucket}/{key} does not exist or is not readable ({code})"
                ) from None
            raise ImageUnreadable(f"cannot read s3://{self.bucket}/{key}: {code}") from None
        except BotoCoreError as error:
            raise ImageUnreadable(f"cannot read s3://{self.bucket}/{key}: {error}") from None

    def keys(self, prefix: str) -> Iterator[str]:
        """Every object key under `prefix`, as Step Functions' S3 listing reader gives them."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]


def reading_deadline(remaining_s: float) -> Deadline:
    """The batch's time for reading images, of the `remaining_s` seconds its invocation has left."""
    reserve = max(READ_RESERVE_MIN_S, READ_RESERVE_FRACTION * remaining_s)
    return Deadline(max(0.0, remaining_s - reserve))


def is_image_key(key: str) -> bool:
    """False for the "folder" placeholders the S3 console creates (keys ending in '/')."""
    return bool(key) and not key.endswith("/")


def item_key(item: object) -> str:
    """The object key of one Distributed Map item: an S3 listing entry, a CSV row or a JSON value."""
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        for field in ("Key", "key"):
            if isinstance(item.get(field), str):
                return item[field]
    raise ValueError(f"batch item {str(item)[:200]} names no object key (a string, or 'Key' / 'key')")


@dataclass(frozen=True)
class BatchInput:
    """What every batch of one job shares (the Distributed Map's BatchInput)."""

    bucket: str
    model_version: str
    top_k: int = DEFAULT_TOP_K

    @classmethod
    def from_event(cls, raw: object) -> BatchInput:
        if not isinstance(raw, Mapping):
            raise ValueError("BatchInput must be an object with 'bucket' and 'model_version'")
        version = raw.get("model_version")
        if not isinstance(version, str) or version == LATEST:
            raise ValueError("BatchInput.model_version must name a published version, resolved at job start")
        bucket = raw.get("bucket")
        if not isinstance(bucket, str) or not bucket:
            raise ValueError("BatchInput.bucket must name the bucket the items are in")
        top_k = raw.get("top_k", DEFAULT_TOP_K)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"BatchInput.top_k must be a whole number from 1 to {MAX_TOP_K}")
        return cls(bucket=bucket, model_version=check_name("version", version), top_k=top_k)


class ModelCache:
    """One model per execution environment: loaded on first use, kept for every later batch.

    A job names its version in each batch; a later job with another version replaces it.
    (The API's `ModelHolder` serves one location with a retry window; a batch names its
    version, and fails, counted against the job's tolerated failures, when it cannot load.)
    The model loads with `settings.engine` and `settings.torch_threads`, as the API's does.
    """

    def __init__(
        self,
        store_uri: str,
        model_name: str,
        *,
        settings: RuntimeSettings | None = None,
    ) -> None:
        self.store_uri = store_uri
        self.model_name = model_name
        self.settings = settings if settings is not None else RuntimeSettings()
        self.loads = 0  # how many times a model was loaded: once per environment and version
        self._lock = threading.Lock()
        self._classifier: Classifier | None = None

    def resolve(self, version: str) -> str:
        """The published version `version` names ("latest" follows the LATEST pointer)."""
        return resolve_version(open_store(self.store_uri), self.model_name, version)

    def classifier(self, version: str) -> Classifier:
        with self._lock:
            current = self._classifier
            if current is None or current.model_id["version"] != version:
                location = ModelLocation(self.store_uri, self.model_name, version)
                current = load_classifier(location, settings=self.settings)
                self._classifier = current
                self.loads += 1
            return current


class BatchWorker:
    """Classifies batches of image keys with one cached model; safe to share between threads."""

    def __init__(self, models: ModelCache) -> None:
        self.models = models

    def classify(
        self, source: ImageSource, keys: Sequence[str], *, version: str, top_k: int = DEFAULT_TOP_K
    ) -> list[dict[str, Any]]:
        """One result line per key, in the keys' order."""
        classifier = self.models.classifier(version)
        lines: list[dict[str, Any]] = [{"key": key, "model": classifier.model_id} for key in keys]
        with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="read") as reads:
            for chunk in _chunks(range(len(keys)), FORWARD_BATCH):
                # At most one forward pass's images are held as bytes; then only their small tensors.
                read = reads.map(lambda index: _read(source, keys[index]), chunk)
                inputs: list[tuple[int, Any]] = []  # the engine's input: a tensor or an array
                for index, data in zip(chunk, read, strict=True):
                    try:
                        if not isinstance(data, bytes):
                            raise data
                        inputs.append((index, classifier.input(data, what=keys[index])))
                    except (ApiError, ImageUnreadable) as error:
                        message = error.message[:MAX_MESSAGE_CHARS]
                        lines[index]["error"] = {"code": error.code, "message": message}
                if inputs:
                    try:
                        ranked = classifier.predict([tensor for _, tensor in inputs], top_k)
                    except ApiError as error:  # outputs no JSON can carry: each image says so
                        for index, _ in inputs:
                            lines[index]["error"] = {"code": error.code, "message": error.message}
                        continue
                    for (index, _), predictions in zip(inputs, ranked, strict=True):
                        lines[index]["predictions"] = [prediction.to_dict() for prediction in predictions]
        return lines


def _read(source: ImageSource, key: str) -> bytes | ImageError:
    """The image's bytes, or the error that is its result line."""
    try:
        data = source.read(key, MAX_IMAGE_BYTES)
    except (ApiError, ImageUnreadable) as error:
        return error
    if len(data) > MAX_IMAGE_BYTES:
        return PayloadTooLarge(f"{key} is over {MAX_IMAGE_BYTES:,} bytes")
    return data


def _chunks(items: Iterable[int], size: int) -> Iterator[list[int]]:
    chunk: list[int] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
