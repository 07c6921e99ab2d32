"""The local runner end to end over a folder: progress, every image answered, resume, bounded work.

Given a folder of images and the tiny model in a local store, when the runner classifies it
into a JSON Lines file, then every image has one line (the batch function's lines), a
re-run after an interruption answers only what is missing, and the pool never reads more
than a few batches ahead of what it has written.
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambda_src.batch import BatchWorker, FolderImages
from local_endpoint.__main__ import main as local_endpoint_main
from local_endpoint.batch_runner import (
    BATCHES_IN_FLIGHT_PER_WORKER,
    LocalInput,
    make_worker,
    open_input,
    run_local_batch,
)
from tests.support.images import coloured_image, encode

from .conftest import FAST_MODEL_NAME, MODEL_NAME, VERSION

LABELS = ("red", "green", "blue")


def write_images(folder: Path, count: int, *, size: tuple[int, int] = (48, 48), broken: int = 0) -> list[str]:
    """`count` coloured PNGs named after their colour, then `broken` files that are not images."""
    keys = []
    for index in range(count):
        label = LABELS[index % 3]
        key = f"{label}/{index:05d}.png"
        (folder / label).mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(encode(coloured_image(label, size=size, seed=index), "PNG"))
        keys.append(key)
    for index in range(broken):
        key = f"broken/{index}.jpg"
        (folder / "broken").mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(b"\xff\xd8\xff truncated")
        keys.append(key)
    return keys


def read_lines(output: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.read_text().splitlines()]


@pytest.fixture(scope="module")
def worker(model_store: Path) -> BatchWorker:
    return make_worker(str(model_store), MODEL_NAME, torch_threads=1)


def test_a_folder_is_classified_into_one_line_per_image_with_progress(
    worker: BatchWorker, tmp_path: Path
) -> None:
    keys = write_images(tmp_path / "images", 30, broken=2)
    (tmp_path / "images" / ".DS_Store").write_bytes(b"hidden files are not images")
    output = tmp_path / "out" / "results.jsonl"
    progress = io.StringIO()

    summary = run_local_batch(
        worker, open_input(str(tmp_path / "images")), output, images_per_batch=8, progress=progress
    )

    lines = read_lines(output)
    assert sorted(line["key"] for line in lines) == sorted(keys)
    by_key = {line["key"]: line for line in lines}
    for key in keys[:30]:
        assert by_key[key]["predictions"][0]["label"] == key.split("/")[0]
        assert by_key[key]["model"] == {"name": MODEL_NAME, "version": VERSION}
    assert {by_key[key]["error"]["code"] for key in keys[30:]} == {"bad_request"}
    assert (summary.total, summary.skipped, summary.processed, summary.failed) == (32, 0, 32, 2)
    assert summary.model_version == VERSION  # "latest", resolved once
    assert "32/32" in progress.getvalue() and "failed=2" in progress.getvalue()


class Interrupted(Exception):
    """Stands for Ctrl-C or a killed process in the middle of a run."""


class InterruptingFolder(FolderImages):
    """A folder whose reads fail after `budget` images, as if the run were stopped there."""

    def __init__(self, root: Path, budget: int) -> None:
        super().__init__(root)
        object.__setattr__(self, "_budget", [budget])

    def read(self, key: str, max_bytes: int) -> bytes:
        budget = self._budget  # type: ignore[attr-defined]
        budget[0] -= 1
        if budget[0] < 0:
            raise Interrupted
        return super().read(key, max_bytes)


def test_a_rerun_resumes_after_an_interruption(worker: BatchWorker, tmp_path: Path) -> None:
    keys = write_images(tmp_path / "images", 40)
    output = tmp_path / "results.jsonl"
    interrupting = InterruptingFolder(tmp_path / "images", budget=17)

    with pytest.raises(Interrupted):
        run_local_batch(
            worker, LocalInput(interrupting, keys, "images"), output, images_per_batch=5, workers=1
        )
    written = read_lines(output)
    assert 0 < len(written) < len(keys)
    with output.open("a") as file:  # a line cut off by the interruption
        file.write('{"key": "red/00000.png", "predic')

    summary = run_local_batch(worker, open_input(str(tmp_path / "images")), output, images_per_batch=5)

    assert (summary.skipped, summary.processed) == (len(written), len(keys) - len(written))
    final = read_lines(output)
    assert sorted(line["key"] for line in final) == sorted(keys)  # each exactly once
    assert final[: len(written)] == written  # the first run's lines are kept as they were

    again = run_local_batch(worker, open_input(str(tmp_path / "images")), output)
    assert (again.skipped, again.processed) == (len(keys), 0)


class CountingWorker(BatchWorker):
    """Counts images read and images answered, to see how far reading runs ahead of answering."""

    def __init__(self, worker: BatchWorker) -> None:
        super().__init__(worker.models)
        self.lock = threading.Lock()
        self.read = 0
        self.answered = 0
        self.most_ahead = 0

    def classify(self, source: Any, keys: Any, **options: Any) -> list[dict[str, Any]]:
        lines = super().classify(_Counted(source, self), keys, **options)
        with self.lock:
            self.answered += len(lines)
        return lines


class _Counted:
    def __init__(self, source: Any, counter: CountingWorker) -> None:
        self.source = source
        self.counter = counter

    def read(self, key: str, max_bytes: int) -> bytes:
        with self.counter.lock:
            self.counter.read += 1
            self.counter.most_ahead = max(self.counter.most_ahead, self.counter.read - self.counter.answered)
        return self.source.read(key, max_bytes)


@pytest.mark.slow
def test_thousands_of_images_are_read_only_a_few_batches_ahead(model_store: Path, tmp_path: Path) -> None:
    image = encode(coloured_image("red", size=(8, 8)), "PNG")
    keys = [f"{index // 500}/{index:05d}.png" for index in range(2000)]
    for key in keys:
        (tmp_path / "images" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / key).write_bytes(image)
    output = tmp_path / "results.jsonl"
    counting = CountingWorker(make_worker(str(model_store), FAST_MODEL_NAME, torch_threads=1))

    summary = run_local_batch(
        counting, open_input(str(tmp_path / "images")), output, images_per_batch=16, workers=2, progress=None
    )

    assert summary.processed == len(keys) == len(read_lines(output))
    # However many images there are, the pool holds at most its in-flight batches.
    assert counting.read == len(keys)
    assert counting.most_ahead <= 2 * BATCHES_IN_FLIGHT_PER_WORKER * 16


def test_an_image_that_cannot_be_read_gets_a_read_failed_line(worker: BatchWorker, tmp_path: Path) -> None:
    keys = write_images(tmp_path / "images", 2)
    (tmp_path / "images" / "folder.png").mkdir()  # listed once, then unreadable as a file
    output = tmp_path / "results.jsonl"

    run_local_batch(
        worker, LocalInput(FolderImages(tmp_path / "images"), [*keys, "folder.png"], "images"), output
    )

    by_key = {line["key"]: line for line in read_lines(output)}
    assert by_key["folder.png"]["error"]["code"] == "read_failed"
    assert all("predictions" in by_key[key] for key in keys)


def test_an_s3_prefix_is_classified_like_a_folder(
    worker: BatchWorker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="photos")
        for label in LABELS:
            s3.put_object(Bucket="photos", Key=f"june/{label}.png", Body=encode(coloured_image(label), "PNG"))
        s3.put_object(Bucket="photos", Key="june/", Body=b"")  # a console folder: not an image
        s3.put_object(Bucket="photos", Key="july/red.png", Body=b"outside the prefix")

        images = open_input("s3://photos/june/", s3_client=s3)
        summary = run_local_batch(worker, images, tmp_path / "results.jsonl", progress=None)

    lines = read_lines(tmp_path / "results.jsonl")
    assert {line["key"]: line["predictions"][0]["label"] for line in lines} == {
        f"june/{label}.png": label for label in LABELS
    }
    assert (summary.total, summary.failed) == (3, 0)


def test_the_batch_command_runs_on_this_machine_over_a_folder(model_store: Path, tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    for label in ("red", "green", "blue"):
        (tmp_path / "images" / f"{label}.png").write_bytes(encode(coloured_image(label), "PNG"))
    output = tmp_path / "results.jsonl"
    argv = [
        "batch",
        "--store",
        str(model_store),
        "--model-name",
        "colours",
        "--input",
        str(tmp_path / "images"),
    ]

    assert local_endpoint_main([*argv, "--output", str(output)]) == 0
    assert local_endpoint_main([*argv, "--output", str(output)]) == 0  # resumes: nothing left to do

    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert {line["key"]: line["predictions"][0]["label"] for line in lines} == {
        "red.png": "red",
        "green.png": "green",
        "blue.png": "blue",
    }
