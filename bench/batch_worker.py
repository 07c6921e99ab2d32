"""The batch worker's throughput: images per second at one and two threads, in one process.

    python -m bench.batch_worker SETTINGS_JSON RESULT_PATH

The worker is the batch function's (lambda_src/batch.py) with the model loaded from the
local store as the function loads it; every image is the bench photo, read from memory,
so the figure is the CPU's work per image (decode, preprocess, forward, result line). On
Lambda the reads from S3 overlap with it (the worker reads ahead). `endpoint_client batch` prices jobs
with these figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from bench.child import write_result
from bench.warm import timed_calls
from local_endpoint.batch_runner import make_worker


class SamePhoto:
    """An image source whose every key is the bench photo."""

    def __init__(self, photo: bytes) -> None:
        self.photo = photo

    def read(self, key: str, max_bytes: int) -> bytes:
        return self.photo


def throughput(settings: dict[str, Any]) -> dict[str, Any]:
    worker = make_worker(settings["store"], settings["model_name"])
    source = SamePhoto(Path(settings["photo_path"]).read_bytes())
    keys = [f"photo-{index}.jpg" for index in range(settings["images_per_batch"])]

    def batch() -> None:
        lines = worker.classify(source, keys, version=settings["version"])
        if any("error" in line for line in lines):
            raise RuntimeError(f"the worker could not classify the bench photo: {lines[0]}")

    results: dict[str, Any] = {}
    for threads in settings["threads"]:
        torch.set_num_threads(threads)
        samples = timed_calls(batch, settings["throughput_seconds"])
        images = len(samples) * len(keys)
        results[str(threads)] = {
            "images_per_s": round(images / sum(samples), 2),
            "ms_per_image": round(sum(samples) * 1000 / images, 2),
        }
    return {"images_per_batch": len(keys), "threads": results}


def main(settings_path: str, result_path: str) -> None:
    settings = json.loads(Path(settings_path).read_text(encoding="utf-8"))
    write_result(result_path, throughput(settings))


if __name__ == "__main__":
    main(*sys.argv[1:3])
