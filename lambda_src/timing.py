"""Wall-clock durations of named phases, in milliseconds, for logs and metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from enum import StrEnum


class Phase(StrEnum):
    """The phases of a predict request, as its log line's `latency_ms` names them."""

    PARSE = "parse"  # the body read (size, base64, JSON) into each image's encoded bytes
    DECODE = "decode"  # encoded bytes to pixels (lambda_src.images)
    PREPROCESS = "preprocess"  # pixels to the model's input tensor (lambda_src.preprocessing)
    INFERENCE = "inference"  # the forward pass and top-k


class PhaseTimer:
    """Adds up how long each named phase took; a phase may run several times."""

    def __init__(self) -> None:
        self.durations_ms: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.durations_ms[name] = self.durations_ms.get(name, 0.0) + elapsed_ms

    def rounded(self) -> dict[str, float]:
        """Durations rounded to 0.1 ms, for logs."""
        return {name: round(value, 1) for name, value in self.durations_ms.items()}


def optional_phase(timer: PhaseTimer | None, name: str) -> AbstractContextManager[None]:
    """`timer.phase(name)`, or nothing when there is no timer."""
    return timer.phase(name) if timer is not None else nullcontext()
