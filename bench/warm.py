"""Warm latency, throughput and the reload-per-request pattern, all in one serving process.

    python -m bench.warm SETTINGS_JSON RESULT_PATH

The handler is initialised from the environment as on Lambda. Next to it, in the same
process and with the same threads, sits the floor: the same model's decode +
preprocess + forward called directly through `lambda_src.preprocessing` and
`lambda_src.architectures`, so the work is identical and only the serving overhead
differs. A second direct variant calls the handler's own network (after whatever
the runtime does to speed it up), so handler over it is pure serving overhead.
Variants are timed round-robin in a shuffled order so that drift in the
machine's load falls on all of them alike.
"""

from __future__ import annotations

import io
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.child import Handler, import_handler, invoke, split_handler, write_result
from bench.events import json_image_event, raw_image_event
from bench.stats import summarise_ms
from lambda_src.architectures import build_model, load_weights
from lambda_src.artifact import Manifest, manifest_key, weights_key
from lambda_src.images import reduced_decode_size
from lambda_src.model_store import open_store
from lambda_src.preprocessing import eval_transform, to_rgb

WARMUP_CALLS = 3


class DirectModel:
    """The floor: one model called directly, no handler, no events, no JSON.

    It decodes as serving does (large JPEGs at 1/2 or 1/4 scale, see
    `lambda_src.images.reduced_decode_size`) unless `full_decode` asks for every pixel.
    """

    def __init__(self, model: torch.nn.Module, manifest: Manifest) -> None:
        self.model = model
        self.transform = eval_transform(manifest.preprocessing)
        self.min_side = manifest.preprocessing.resize

    @classmethod
    def plain(cls, manifest: Manifest, weights: bytes) -> DirectModel:
        """The bare model: built, loaded and put in eval mode, nothing else."""
        model = build_model(manifest.architecture, manifest.num_classes)
        load_weights(model, torch.load(io.BytesIO(weights), weights_only=True, map_location="cpu"), "floor")
        return cls(model.eval(), manifest)

    def tensor(self, jpeg: bytes, full_decode: bool = False) -> torch.Tensor:
        with Image.open(io.BytesIO(jpeg)) as image:
            if not full_decode:
                image.draft("RGB", reduced_decode_size(image.size, self.min_side))
            return self.transform(to_rgb(image))

    def predict(self, jpegs: list[bytes], full_decode: bool = False) -> torch.Tensor:
        batch = torch.stack([self.tensor(jpeg, full_decode) for jpeg in jpegs])
        with torch.inference_mode():
            return self.model(batch)


def reload_per_request(store: Any, manifest: Manifest, jpeg: bytes) -> torch.Tensor:
    """The peer pattern: read and rebuild the model for every request, then predict."""
    weights = store.read(weights_key("", manifest.model_name, manifest.version))
    return DirectModel.plain(manifest, weights).predict([jpeg])


def time_round_robin(variants: dict[str, Callable[[], object]], iterations: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, `iterations` rounds in a fresh shuffled order each."""
    for call in variants.values():
        for _ in range(WARMUP_CALLS):
            call()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    shuffler = random.Random(0)
    for _ in range(iterations):
        shuffler.shuffle(names)
        for name in names:
            started = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - started)
    return samples


def timed_calls(call: Callable[[], object], seconds: float) -> list[float]:
    """Seconds per call of `call`, repeated for about `seconds` (at least three calls, after a warm-up)."""
    call()
    samples: list[float] = []
    while len(samples) < 3 or sum(samples) < seconds:
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def rate(samples: list[float], images_per_call: int) -> dict[str, float]:
    """Images per second and the median milliseconds per call."""
    return {
        "images_per_s": round(len(samples) * images_per_call / sum(samples), 2),
        "p50_ms_per_call": summarise_ms(samples)["p50"],
    }


def throughput(handler: Handler, floor: DirectModel, photo: bytes, settings: dict) -> dict[str, dict]:
    """Images per second through the handler and the floor, single images and batches, per thread count."""
    batch, seconds = settings["batch_size"], settings["throughput_seconds"]
    raw_event, batch_event = raw_image_event(photo), json_image_event([photo] * batch)
    variants: dict[str, tuple[Callable[[], object], int]] = {
        "handler_single": (lambda: invoke(handler, raw_event), 1),
        "handler_batch": (lambda: invoke(handler, batch_event), batch),
        "floor_single": (lambda: floor.predict([photo]), 1),
        "floor_batch": (lambda: floor.predict([photo] * batch), batch),
    }
    threads_before = torch.get_num_threads()
    results: dict[str, dict] = {}
    try:
        for threads in settings["throughput_threads"]:
            torch.set_num_threads(threads)
            results[str(threads)] = {
                name: rate(timed_calls(call, seconds), images) for name, (call, images) in variants.items()
            }
    finally:
        torch.set_num_threads(threads_before)
    return results


def served_network(handler_spec: str) -> torch.nn.Module:
    """The network inside the initialised handler module's inference service."""
    module = sys.modules[split_handler(handler_spec)[0]]
    return module.service.model.network


def main(settings_path: str, result_path: str) -> None:
    settings = json.loads(Path(settings_path).read_text(encoding="utf-8"))
    photo = Path(settings["photo_path"]).read_bytes()
    large_photo = Path(settings["large_photo_path"]).read_bytes()
    handler = import_handler(settings["handler"])

    store = open_store(settings["store"])
    manifest = Manifest.from_json(store.read(manifest_key("", settings["model_name"], settings["version"])))
    floor = DirectModel.plain(manifest, store.read(weights_key("", manifest.model_name, manifest.version)))
    # The network exactly as the handler serves it (with whatever it does to speed it up),
    # called directly: the handler's latency over this one is pure serving overhead.
    served = DirectModel(served_network(settings["handler"]), manifest)
    events = {
        "raw": raw_image_event(photo),
        "json": json_image_event([photo]),
        "raw_large": raw_image_event(large_photo),
    }
    latency = time_round_robin(
        {
            "floor": lambda: floor.predict([photo]),
            "floor_full_decode": lambda: floor.predict([photo], full_decode=True),
            "served_network": lambda: served.predict([photo]),
            "handler_raw": lambda: invoke(handler, events["raw"]),
            "handler_json": lambda: invoke(handler, events["json"]),
            "floor_large": lambda: floor.predict([large_photo]),
            "floor_large_full_decode": lambda: floor.predict([large_photo], full_decode=True),
            # The input alone (decode + preprocess): what the reduced JPEG decode changes.
            "input_large": lambda: floor.tensor(large_photo),
            "input_large_full_decode": lambda: floor.tensor(large_photo, full_decode=True),
            "handler_raw_large": lambda: invoke(handler, events["raw_large"]),
        },
        settings["iterations"],
    )
    latency |= time_round_robin(
        {"peer_reload": lambda: reload_per_request(store, manifest, photo)}, settings["peer_iterations"]
    )
    result = {
        "threads": torch.get_num_threads(),
        "latency_ms": {name: summarise_ms(samples) for name, samples in latency.items()},
        "throughput": throughput(handler, floor, photo, settings),
    }
    write_result(result_path, result)


if __name__ == "__main__":
    main(*sys.argv[1:3])
