"""The batch worker's throughput: images per second at one and two threads, in one process.

    python -m bench.batch_worker SETTINGS_JSON RESULT_PATH

The worker is the batch function's (lambda_src/batch.py) with the model loaded from the
local store as the function loads it, with the settings' engine (torch by default); every
image is the bench photo, read from memory, so the figure is the CPU's work per image
(decode, preprocess, forward, result line). On Lambda the reads from S3 overlap with it (the
worker reads ahead). `endpoint_client batch` prices jobs with these figures.

Each thread count gets its own worker, whose model is loaded with that many threads before
the clock starts: loading sets the engine's threads (torch's process-wide), so one worker
loaded inside the first timed batch would run every count at all the CPUs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.child import write_result
from bench.warm import timed_calls
from lambda_src.contract import ModelEngine
from local_endpoint.batch_runner import make_worker


class SamePhoto:
    """An image source whose every key is the bench photo."""

    def __init__(self, photo: bytes) -> None:
        self.photo = photo

    def read(self, key: str, max_bytes: int) -> bytes:
        return self.photo


def throughput(settings: dict[str, Any]) -> dict[str, Any]:
    engine = ModelEngine(settings.get("engine", ModelEngine.TORCH))
    source = SamePhoto(Path(settings["photo_path"]).read_bytes())
    keys = [f"photo-{index}.jpg" for index in range(settings["images_per_batch"])]
    results: dict[str, Any] = {}
    for threads in settings["threads"]:
        worker = make_worker(settings["store"], settings["model_name"], torch_threads=threads, engine=engine)
        classifier = worker.models.classifier(settings["version"])  # loaded now, with `threads` threads

        def batch(worker: Any = worker) -> None:
            lines = worker.classify(source, keys, version=settings["version"])
            if any("error" in line for line in lines):
                raise RuntimeError(f"the worker could not classify the bench photo: {lines[0]}")

        samples = timed_calls(batch, settings["throughput_seconds"])
        images = len(samples) * len(keys)
        results[str(threads)] = {
            "images_per_s": round(images / sum(samples), 2),
            "ms_per_image": round(sum(samples) * 1000 / images, 2),
            "engine_threads": engine_threads(engine, classifier.threads),
        }
    return {"images_per_batch": len(keys), "engine": engine.value, "threads": results}


def engine_threads(engine: ModelEngine, configured: int) -> int:
    """The threads the engine ran with: torch's process-wide count after the timing, else the session's."""
    if engine is ModelEngine.TORCH:
        import torch

        return torch.get_num_threads()
    return configured


def main(settings_path: str, result_path: str) -> None:
    settings = json.loads(Path(settings_path).read_text(encoding="utf-8"))
    write_result(result_path, throughput(settings))


if __name__ == "__main__":
    main(*sys.argv[1:3])
