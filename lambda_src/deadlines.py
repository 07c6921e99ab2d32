"""Total wall-clock bounds: a deadline, and work that must finish by one or be given up.

Socket timeouts bound each wait for a byte, not a whole call: a store that answers and then
sends a byte a second never trips them. `call_within` runs the work on a daemon thread and
stops waiting for it at the bound, so the caller always gets an answer in time; `give_up`
(run then) lets the work's own connections be cut so its thread ends soon too. Daemon
threads: work that was given up never holds up the process's exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Deadline:
    """A point in monotonic time: how long is left until it."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._at = clock() + seconds

    def remaining(self) -> float:
        """Seconds left (0 once passed)."""
        return max(0.0, self._at - self._clock())

    @property
    def passed(self) -> bool:
        return self.remaining() <= 0


class DeadlineExceeded(TimeoutError):
    """The work did not finish within its bound; it was given up."""


def call_within(
    seconds: float,
    work: Callable[[], T],
    *,
    give_up: Callable[[], None] | None = None,
    name: str = "bounded-call",
) -> T:
    """`work()`'s result (or its exception) if it finishes within `seconds`, else DeadlineExceeded.

    The work runs on a daemon thread; at the bound `give_up` is called (if given) and the
    thread is left to end on its own.
    """
    if seconds <= 0:
        if give_up is not None:
            give_up()
        raise DeadlineExceeded(f"no time left for {name}")
    outcome: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the caller, whatever it is
            outcome["error"] = error
        finally:
            done.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not done.wait(seconds):
        if give_up is not None:
            give_up()
        raise DeadlineExceeded(f"{name} did not finish within {seconds:g} s")
    if "error" in outcome:
        error = outcome["error"]
        assert isinstance(error, BaseException)
        raise error
    return outcome["value"]  # type: ignore[return-value]
