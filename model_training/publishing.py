"""Publish a trained model as a new, immutable version in a model store (S3 or a local folder).

Order of writes, so a reader never follows LATEST to a broken version:

    1. <model>/<version>/model.pt       written only if absent, then checked (size, SHA-256)
       <model>/<version>/model.onnx     the same, when the model exported (`onnx=True`),
       <model>/<version>/model.onnx.data  with the export's weights beside it
    2. <model>/<version>/manifest.json  written only if absent, then checked
    3. <model>/LATEST                   moved to the new version last

In S3 "only if absent" is a conditional write (`If-None-Match: *`), so two
publishers racing for one version cannot overwrite each other. In a local folder
the version is assembled in a hidden temporary folder and renamed into place.
A failed publish removes what it wrote and leaves LATEST where it was.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from lambda_src.artifact import (
    LATEST_POINTER,
    MANIFEST_FILE,
    ONNX_DATA_FILE,
    ONNX_FILE,
    SCHEMA_VERSION,
    WEIGHTS_FILE,
    Manifest,
    check_name,
    latest_key,
    manifest_key,
    model_prefix,
    sha256_hex,
    version_file_key,
    version_prefix,
    weights_key,
)
from lambda_src.contract import JSON_MEDIA_TYPE
from lambda_src.errors import IntegrityError, ManifestError, VersionExists
from lambda_src.model_store import LocalModelStore, S3ModelStore, parse_store_uri

_AUTO_VERSION = re.compile(r"^v([0-9]+)$")


# A local store is read by whoever serves it (the image runs as a non-root user): everyone may
# read what `publish` writes, as with files created under the usual umask of 022.
READABLE_FOLDER_MODE = 0o755
READABLE_FILE_MODE = 0o644


class PublishError(Exception):
    """Publishing failed for a reason a person can act on (store missing, access denied...)."""


@dataclass(frozen=True)
class PublishedVersion:
    """Where a publish put the model."""

    store_uri: str
    model_name: str
    version: str
    keys: tuple[str, ...]  # the objects written, relative to the store root
    manifest: Manifest
    onnx_skipped: str | None = None  # why the version has no model.onnx, when an export was asked for
    onnx_seconds: float | None = None  # what exporting and checking model.onnx took

    @property
    def location(self) -> str:
        """The version's folder, as a URI a person can paste."""
        return version_uri(self.store_uri, self.model_name, self.version)


@dataclass(frozen=True)
class VersionListing:
    """The complete versions of a model (those with a manifest) and what LATEST points to."""

    model_name: str
    versions: tuple[str, ...]
    latest: str | None


class Publisher(Protocol):
    """Writes versions to one kind of model store and reads it too; keys are relative to its root."""

    store_uri: str
    prefix: str

    def read(self, key: str, *, size: int | None = None) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def describe(self, key: str) -> str: ...

    def taken_versions(self, model_name: str) -> set[str]: ...

    def complete_versions(self, model_name: str) -> set[str]: ...

    def read_text(self, key: str) -> str | None: ...

    def write_version(
        self, model_name: str, version: str, files: dict[str, bytes], progress: bool
    ) -> None: ...

    def write_latest(self, model_name: str, version: str) -> None: ...


def version_uri(store_uri: str, model_name: str, version: str) -> str:
    """A version's folder under `store_uri`, as a URI a person can paste."""
    return f"{store_uri.rstrip('/')}/{version_prefix('', model_name, version)}/"


def version_sort_key(version: str) -> tuple[int, int, str]:
    """v1 < v2 < v10, and automatic versions before any other names (sorted as text)."""
    match = _AUTO_VERSION.match(version)
    return (0, int(match.group(1)), "") if match else (1, 0, version)


def next_version(taken: set[str]) -> str:
    """The next automatic version: v1, v2, ... one past the highest vN already used."""
    numbers = [int(match.group(1)) for name in taken if (match := _AUTO_VERSION.match(name))]
    return f"v{max(numbers, default=0) + 1}"


def read_output(folder: Path) -> tuple[bytes, Manifest]:
    """The weights and manifest a training run wrote to `folder`, checked to belong together."""
    weights_path, manifest_path = folder / WEIGHTS_FILE, folder / MANIFEST_FILE
    for path in (weights_path, manifest_path):
        if not path.is_file():
            raise PublishError(
                f"{path} does not exist: give the folder `python -m model_training train --output` wrote"
            )
    weights = weights_path.read_bytes()
    try:
        manifest = Manifest.from_json(manifest_path.read_bytes())
    except ManifestError as error:
        raise ManifestError(f"{manifest_path}: {error}") from None
    if len(weights) != manifest.weights_size_bytes or sha256_hex(weights) != manifest.weights_sha256:
        raise IntegrityError(
            f"{weights_path} does not match the SHA-256 and size in {manifest_path}: "
            "the folder holds the weights of a different run; train again"
        )
    check_finite(weights, str(weights_path))
    return weights, manifest


def check_finite(weights: bytes, description: str) -> None:
    """IntegrityError if a weight is NaN or infinite: such a model would answer scores no JSON can carry."""
    from lambda_src.loader import non_finite_tensors, read_state_dict  # torch, only when publishing

    bad = non_finite_tensors(read_state_dict(weights, description))
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise IntegrityError(
            f"{description} holds NaN or infinite values (in {shown}): the training diverged or the "
            "file is damaged; such a model cannot be published"
        )


def publish(
    output_dir: Path | str,
    store_uri: str,
    *,
    model_name: str | None = None,
    version: str | None = None,
    progress: bool = True,
    s3_client: Any = None,
    onnx: bool = False,
) -> PublishedVersion:
    """Publish the training output in `output_dir` to `store_uri` as a new version; move LATEST to it.

    `model_name` defaults to the manifest's; `version` defaults to the next free vN.
    With `onnx`, `model.onnx` is exported and checked against the torch model first
    (`model_training.onnx_export`); a model that does not export or match is published
    without it, and `onnx_skipped` says why. Raises VersionExists if the version is
    already there (versions are immutable).
    """
    weights, manifest = read_output(Path(output_dir))
    onnx_files: dict[str, bytes] | None = None
    skipped = seconds = None
    if onnx:
        from model_training.onnx_export import OnnxExportFailed, export_onnx

        try:
            exported = export_onnx(weights, manifest)
        except OnnxExportFailed as error:
            skipped = str(error)
        else:
            onnx_files, seconds = exported.files, exported.seconds
            manifest = dataclasses.replace(manifest, onnx=exported.export, schema_version=SCHEMA_VERSION)
    if onnx_files is None:
        manifest = dataclasses.replace(manifest, onnx=None)  # a manifest never lists a file not published
    published = publish_artifact(
        weights,
        manifest,
        store_uri,
        model_name=model_name,
        version=version,
        progress=progress,
        s3_client=s3_client,
        onnx_files=onnx_files,
    )
    return dataclasses.replace(published, onnx_skipped=skipped, onnx_seconds=seconds)


def publish_artifact(
    weights: bytes,
    manifest: Manifest,
    store_uri: str,
    *,
    model_name: str | None = None,
    version: str | None = None,
    progress: bool = True,
    s3_client: Any = None,
    onnx_files: Mapping[str, bytes] | None = None,
) -> PublishedVersion:
    """Publish `weights` (and `onnx_files`, which `manifest.onnx` describes) as a new version of the model.

    `onnx_files` maps each file `manifest.onnx.files` lists (model.onnx, model.onnx.data) to its bytes.
    """
    listed = set(manifest.onnx.files) if manifest.onnx is not None else None
    if (set(onnx_files) if onnx_files is not None else None) != listed:
        raise ValueError(f"give exactly the ONNX files the manifest describes: {sorted(listed or [])}")
    model_name = check_name("model name", model_name or manifest.model_name)
    publisher = open_publisher(store_uri, s3_client=s3_client)
    taken = publisher.taken_versions(model_name)
    version = check_name("version", version) if version else next_version(taken)
    if version in taken:
        raise VersionExists(
            f"{version_uri(publisher.store_uri, model_name, version)} already exists and versions are "
            "never overwritten: publish under another --version (or omit it for the next free one)"
        )
    manifest = dataclasses.replace(manifest, model_name=model_name, version=version)
    files = {WEIGHTS_FILE: weights}
    keys = [weights_key(publisher.prefix, model_name, version)]
    for name, data in (onnx_files or {}).items():
        files[name] = data
        keys.append(version_file_key(publisher.prefix, model_name, version, name))
    files[MANIFEST_FILE] = manifest.to_json()  # after the files it describes
    keys += [manifest_key(publisher.prefix, model_name, version), latest_key(publisher.prefix, model_name)]
    publisher.write_version(model_name, version, files, progress)
    publisher.write_latest(model_name, version)
    return PublishedVersion(publisher.store_uri, model_name, version, tuple(keys), manifest)


def add_onnx_export(
    store_uri: str,
    model_name: str,
    from_version: str,
    *,
    version: str | None = None,
    progress: bool = True,
    s3_client: Any = None,
) -> PublishedVersion:
    """Publish `from_version` again with its ONNX export, as a new version (versions are immutable).

    The weights are read and hash-checked as serving reads them; `OnnxExportFailed` (nothing
    published) if the model does not export or match, `PublishError` if it already has ONNX.
    """
    from lambda_src.loader import verify_weights
    from lambda_src.model_store import read_manifest, resolve_version
    from model_training.onnx_export import export_onnx

    check_name("model name", model_name)
    publisher = open_publisher(store_uri, s3_client=s3_client)
    source = resolve_version(publisher, model_name, from_version)
    manifest = read_manifest(publisher, model_name, source)
    if manifest.onnx is not None:
        raise PublishError(
            f"{version_uri(publisher.store_uri, model_name, source)} already has model.onnx: "
            "serve it with MODEL_ENGINE=onnxruntime"
        )
    key = weights_key(publisher.prefix, model_name, source)
    weights = publisher.read(key, size=manifest.weights_size_bytes)
    verify_weights(weights, manifest, publisher.describe(key))
    exported = export_onnx(weights, manifest)
    manifest = dataclasses.replace(manifest, onnx=exported.export, schema_version=SCHEMA_VERSION)
    published = publish_artifact(
        weights,
        manifest,
        store_uri,
        model_name=model_name,
        version=version,
        progress=progress,
        s3_client=s3_client,
        onnx_files=exported.files,
    )
    return dataclasses.replace(published, onnx_seconds=exported.seconds)


def list_versions(store_uri: str, model_name: str, *, s3_client: Any = None) -> VersionListing:
    """The published versions of `model_name` in `store_uri`, oldest automatic version first."""
    check_name("model name", model_name)
    publisher = open_publisher(store_uri, s3_client=s3_client)
    versions = tuple(sorted(publisher.complete_versions(model_name), key=version_sort_key))
    latest = publisher.read_text(latest_key(publisher.prefix, model_name))
    return VersionListing(model_name, versions, latest.strip() if latest is not None else None)


def open_publisher(store_uri: str, *, s3_client: Any = None) -> Publisher:
    """A publisher for `s3://bucket/prefix` or a local folder (plain path or file://)."""
    try:
        parsed = parse_store_uri(store_uri)
    except ValueError as error:
        raise PublishError(str(error)) from None
    if parsed.bucket is not None:
        return S3Publisher(parsed.bucket, parsed.path, client=s3_client)
    return LocalPublisher(Path(parsed.path))


class LocalPublisher(LocalModelStore):
    """A model store in a local folder that can also publish."""

    def _model_dir(self, model_name: str) -> Path:
        return self.root / model_prefix(self.prefix, model_name)

    def taken_versions(self, model_name: str) -> set[str]:
        folder = self._model_dir(model_name)
        if not folder.is_dir():
            return set()
        return {path.name for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")}

    def complete_versions(self, model_name: str) -> set[str]:
        return {
            version
            for version in self.taken_versions(model_name)
            if self.exists(manifest_key(self.prefix, model_name, version))
        }

    def read_text(self, key: str) -> str | None:
        try:
            return (self.root / key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write_version(self, model_name: str, version: str, files: dict[str, bytes], progress: bool) -> None:
        model_dir = self._model_dir(model_name)
        final = self.root / version_prefix(self.prefix, model_name, version)
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PublishError(f"cannot create {model_dir}: {error.strerror}") from None
        # A hidden name: never mistaken for a version by readers or `taken_versions`.
        staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".publishing-{version}-"))
        try:
            staging.chmod(READABLE_FOLDER_MODE)  # mkdtemp gives 0700: the server's user could not read it
            for name, data in files.items():  # local writes take no time worth a progress bar
                (staging / name).write_bytes(data)
                _check_copy(staging / name, data)
            try:
                # rename() refuses a non-empty target: a concurrent publish of this version loses here.
                staging.rename(final)
            except OSError:
                raise VersionExists(f"{final} already exists and versions are never overwritten") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def write_latest(self, model_name: str, version: str) -> None:
        pointer = self.root / latest_key(self.prefix, model_name)
        handle, temporary = tempfile.mkstemp(dir=pointer.parent, prefix=f".{LATEST_POINTER}.")
        os.fchmod(handle, READABLE_FILE_MODE)  # mkstemp's 0600, like mkdtemp's 0700, is for secrets
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(version)
        os.replace(temporary, pointer)  # atomic: readers see the old or the new version, never half


def _check_copy(path: Path, data: bytes) -> None:
    written = path.read_bytes()
    if len(written) != len(data) or sha256_hex(written) != sha256_hex(data):
        raise IntegrityError(f"{path} does not read back as written (size or SHA-256 differ)")


@contextmanager
def _progress_bar(description: str, total: int, enabled: bool) -> Iterator[tqdm]:
    with tqdm(
        total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled
    ) as bar:
        yield bar


class _ProgressReader(io.RawIOBase):
    """A readable view of bytes that advances a progress bar as botocore sends them.

    botocore may rewind the body (to hash it, or to retry), so the bar follows the
    position rather than counting every read.
    """

    def __init__(self, data: bytes, bar: tqdm) -> None:
        self._buffer = io.BytesIO(data)
        self._bar = bar

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._buffer.read(size)
        self._bar.update(self._buffer.tell() - self._bar.n)
        return chunk

    def readinto(self, target: Any) -> int:
        chunk = self.read(len(target))
        target[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._buffer.seek(offset, whence)

    def tell(self) -> int:
        return self._buffer.tell()


def _sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


_CONTENT_TYPES = {
    WEIGHTS_FILE: "application/octet-stream",
    ONNX_FILE: "application/octet-stream",
    ONNX_DATA_FILE: "application/octet-stream",
    MANIFEST_FILE: JSON_MEDIA_TYPE,
}


class S3Publisher(S3ModelStore):
    """A model store under `s3://bucket/prefix` that can also publish (boto3 honours AWS_ENDPOINT_URL_S3)."""

    def _new_client(self) -> Any:
        # boto3's own timeouts and retries: an upload takes what it takes, a person watches its progress.
        import boto3

        return boto3.client("s3")

    def _list_keys(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"]

    def _version_files(self, model_name: str) -> Iterator[tuple[str, str]]:
        """(version, file name) for every object in a version folder of `model_name`."""
        base = model_prefix(self.prefix, model_name) + "/"
        with s3_errors(f"listing {self.describe(base)}"):
            for key in self._list_keys(base):
                version, _, name = key[len(base) :].partition("/")
                if name:
                    yield version, name

    def taken_versions(self, model_name: str) -> set[str]:
        return {version for version, _ in self._version_files(model_name)}

    def complete_versions(self, model_name: str) -> set[str]:
        return {version for version, name in self._version_files(model_name) if name == MANIFEST_FILE}

    def read_text(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            with s3_errors(f"reading {self.describe(key)}"):
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8")
        except PublishError as error:
            missing = isinstance(error.__cause__, ClientError) and _error_code(error.__cause__) in {
                "NoSuchKey",
                "404",
            }
            if missing:
                return None
            raise

    def write_version(self, model_name: str, version: str, files: dict[str, bytes], progress: bool) -> None:
        written: list[str] = []
        try:
            for name, data in files.items():
                key = version_file_key(self.prefix, model_name, version, name)
                self._put_new(key, data, _CONTENT_TYPES[name], progress)
                written.append(key)
                self._verify(key, data)
        except BaseException:
            self._remove(written)
            raise

    def write_latest(self, model_name: str, version: str) -> None:
        key = latest_key(self.prefix, model_name)
        with s3_errors(f"writing {self.describe(key)}"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=version.encode("utf-8"),
                ContentType="text/plain; charset=utf-8",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_sha256_base64(version.encode("utf-8")),
            )

    def _put_new(self, key: str, data: bytes, content_type: str, progress: bool) -> None:
        """PUT `key` only if it does not exist; S3 checks the body against our SHA-256 on arrival."""
        from botocore.exceptions import ClientError

        with _progress_bar(f"uploading {key.rsplit('/', 1)[-1]}", len(data), progress) as bar:
            try:
                with s3_errors(f"uploading {self.describe(key)}"):
                    self.client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=_ProgressReader(data, bar),
                        ContentLength=len(data),
                        ContentType=content_type,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=_sha256_base64(data),
                        IfNoneMatch="*",
                    )
            except PublishError as error:
                cause = error.__cause__
                if isinstance(cause, ClientError) and _error_code(cause) in {"PreconditionFailed", "412"}:
                    raise VersionExists(
                        f"{self.describe(key)} already exists (published concurrently?) and versions are "
                        "never overwritten"
                    ) from None
                raise

    def _verify(self, key: str, data: bytes) -> None:
        """Ask S3 what it stored: the size and SHA-256 must be ours."""
        with s3_errors(f"checking {self.describe(key)}"):
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        if head.get("ContentLength") != len(data):
            raise IntegrityError(
                f"{self.describe(key)} holds {head.get('ContentLength')} bytes after upload, "
                f"expected {len(data)}"
            )
        if head.get("ChecksumSHA256") != _sha256_base64(data):
            raise IntegrityError(
                f"{self.describe(key)} has SHA-256 {head.get('ChecksumSHA256')!r} after upload, "
                f"expected {_sha256_base64(data)!r}"
            )

    def _remove(self, keys: list[str]) -> None:
        """Best effort: delete what a failed publish wrote, so the version name stays free."""
        for key in keys:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            except Exception:  # cleanup must not hide the error that made the publish fail
                print(
                    f"warning: could not remove {self.describe(key)}; LATEST was not moved", file=sys.stderr
                )


def _error_code(error: Exception) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


@contextmanager
def s3_errors(action: str) -> Iterator[None]:
    """Turn boto3's exceptions into PublishError messages a person can act on."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        yield
    except NoCredentialsError as error:
        raise PublishError(
            f"{action}: no AWS credentials found. Configure them (aws configure, AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        ) from error
    except NoRegionError as error:
        raise PublishError(f"{action}: no AWS region set (AWS_REGION or aws configure)") from error
    except ClientError as error:
        code = _error_code(error)
        message = error.response.get("Error", {}).get("Message", "")
        hints = {
            "NoSuchBucket": "the bucket does not exist (check the name, or deploy the stack)",
            "AccessDenied": "access denied: your credentials may not write to this bucket",
            "403": "access denied: your credentials may not use this bucket",
            "InvalidAccessKeyId": "the AWS access key is not valid",
            "ExpiredToken": "your AWS session has expired: refresh your credentials",
            "BadDigest": "the upload was corrupted in transit (S3 rejected its SHA-256): try again",
        }
        raise PublishError(f"{action}: {hints.get(code, f'{code}: {message}')}") from error
    except BotoCoreError as error:
        raise PublishError(f"{action}: {error}") from error


def describe_listing(listing: VersionListing, store_uri: str) -> str:
    """The `versions` command's text."""
    if not listing.versions:
        return f"{listing.model_name} has no published versions in {store_uri}"
    lines = [f"{listing.model_name} in {store_uri}:"]
    for version in listing.versions:
        marker = f"  <- {LATEST_POINTER}" if version == listing.latest else ""
        lines.append(f"  {version}{marker}")
    if listing.latest and listing.latest not in listing.versions:
        lines.append(f"  warning: {LATEST_POINTER} names {listing.latest!r}, which is not a complete version")
    return "\n".join(lines)
