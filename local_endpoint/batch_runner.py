"""Batch classification on one machine: the batch function's worker over a folder or an s3:// prefix.

The same `BatchWorker` as the deployed batch function, the same result lines, written to one
JSON Lines file as batches finish. A bounded pool keeps at most a few batches in flight, so
memory stays flat however many images there are. Re-running with the same output resumes:
images the file already answers are skipped (a line cut short by an interruption is dropped).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from tqdm import tqdm

from lambda_src.artifact import LATEST
from lambda_src.batch import BatchWorker, FolderImages, ImageSource, ModelCache, S3Images, is_image_key
from lambda_src.contract import ModelEngine
from lambda_src.settings import RuntimeSettings

DEFAULT_IMAGES_PER_BATCH = 32
DEFAULT_WORKERS = 2
BATCHES_IN_FLIGHT_PER_WORKER = 2  # one running, one read ahead: the pool never waits, memory stays bounded


@dataclass(frozen=True)
class LocalBatchSummary:
    """What one run did: images found, already answered before it, answered now, and failed now."""

    total: int
    skipped: int
    processed: int
    failed: int
    model_version: str
    output: Path


@dataclass(frozen=True)
class LocalInput:
    """Where the images are, and their keys in a stable order."""

    source: ImageSource
    keys: list[str]
    description: str


def open_input(uri: str, *, s3_client: Any = None) -> LocalInput:
    """A folder path, or s3://bucket/prefix (any endpoint boto3 is pointed at: moto, MinIO)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{uri!r} names no bucket: use s3://bucket/prefix")
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        images = S3Images(parsed.netloc, s3_client)
        keys = [key for key in images.keys(parsed.path.lstrip("/")) if is_image_key(key)]
        return LocalInput(images, keys, uri)
    if parsed.scheme:
        raise ValueError(f"unsupported input {uri!r}: give a folder or s3://bucket/prefix")
    root = Path(uri)
    if not root.is_dir():
        raise ValueError(f"input folder {uri} does not exist")
    folder = FolderImages(root)
    return LocalInput(folder, list(folder.keys()), str(root))


def answered_keys(output: Path) -> set[str]:
    """Keys the output file already has a complete line for; a cut-off last line is removed."""
    if not output.exists():
        return set()
    data = output.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with output.open("r+b") as file:  # drop what an interruption left half-written
            file.truncate(len(complete))
    return {json.loads(line)["key"] for line in complete.splitlines() if line.strip()}


def run_local_batch(
    worker: BatchWorker,
    images: LocalInput,
    output: Path,
    *,
    version: str = LATEST,
    images_per_batch: int = DEFAULT_IMAGES_PER_BATCH,
    workers: int = DEFAULT_WORKERS,
    progress: IO[str] | None = sys.stderr,
) -> LocalBatchSummary:
    """Classify every image `output` does not answer yet, appending one line per image."""
    resolved = worker.models.resolve(version)  # once: one run never mixes versions
    done = answered_keys(output)
    pending = [key for key in images.keys if key not in done]
    batches = [
        pending[start : start + images_per_batch] for start in range(0, len(pending), images_per_batch)
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    with (
        output.open("a", encoding="utf-8") as file,
        tqdm(
            total=len(images.keys),
            initial=len(images.keys) - len(pending),
            unit="image",
            desc="classifying",
            file=progress,
            disable=progress is None,
        ) as bar,
    ):
        for lines in _classified(worker, images.source, batches, resolved, workers):
            for line in lines:
                file.write(json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n")
                failed += "error" in line
            file.flush()
            bar.update(len(lines))
            bar.set_postfix(failed=failed)
    return LocalBatchSummary(
        total=len(images.keys),
        skipped=len(images.keys) - len(pending),
        processed=len(pending),
        failed=failed,
        model_version=resolved,
        output=output,
    )


def _classified(
    worker: BatchWorker, source: ImageSource, batches: list[list[str]], version: str, workers: int
) -> Iterator[list[dict[str, Any]]]:
    """Each batch's result lines as it finishes, with at most a few batches in flight."""
    limit = max(1, workers) * BATCHES_IN_FLIGHT_PER_WORKER
    remaining = iter(batches)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="batch") as pool:
        running: set[Future[list[dict[str, Any]]]] = set()
        try:
            while True:
                for keys in remaining:
                    running.add(pool.submit(worker.classify, source, keys, version=version))
                    if len(running) >= limit:
                        break
                if not running:
                    return
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        finally:
            for future in running:  # an interruption: drop what has not started
                future.cancel()


def make_worker(
    store_uri: str, model_name: str, *, torch_threads: int = 0, engine: ModelEngine = ModelEngine.TORCH
) -> BatchWorker:
    """The batch function's worker for a model store, as the deployed function builds it."""
    settings = RuntimeSettings(torch_threads=torch_threads, engine=engine)
    return BatchWorker(ModelCache(store_uri, model_name, settings=settings))
