"""Warm latency of a serving process with the engine and threads its environment names.

    python -m bench.engine_warm PHOTO_PATH ITERATIONS RESULT_PATH

MODEL_ENGINE and TORCH_NUM_THREADS come from the environment, as on Lambda. After a few
discarded requests, ITERATIONS raw-JPEG requests (the bench photo) are timed one by one.
"""

from __future__ import annotations

import io
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

from bench.child import import_handler, invoke, write_result
from bench.events import raw_image_event
from bench.stats import summarise_ms

WARMUP_CALLS = 3


def main(photo_path: str, iterations: str, result_path: str) -> None:
    photo = Path(photo_path).read_bytes()
    with redirect_stdout(io.StringIO()):  # the function's log lines
        handler = import_handler()
        for _ in range(WARMUP_CALLS):
            invoke(handler, raw_image_event(photo))
        samples = []
        for _ in range(int(iterations)):
            started = time.perf_counter()
            invoke(handler, raw_image_event(photo))
            samples.append(time.perf_counter() - started)
    write_result(result_path, {"latency_ms": summarise_ms(samples)})


if __name__ == "__main__":
    main(*sys.argv[1:4])
