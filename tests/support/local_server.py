"""A local endpoint (or the demo) started as its own process, for tests that speak real HTTP to it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 120  # importing torch and loading the model, on a busy 2-core machine
SERVING_LINE = re.compile(r"Serving on (http://127\.0\.0\.1:\d+)")


@dataclass
class ServerProcess:
    """A local endpoint running as its own process, with its output in a file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGINT, timeout_s: float = 30) -> int:
        """Send `signum` (Ctrl-C by default) and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"the server ignored signal {signum} for {timeout_s} s:\n{self.log()}"
            ) from None


def start_server(
    module: str, args: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None
) -> ServerProcess:
    """Start `python -m <module> <args> --port 0` and wait until it says where it serves."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--host", "127.0.0.1", "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        found = SERVING_LINE.search(text)
        if found:
            return ServerProcess(process, log_path, found.group(1))
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before serving:\n{text}")
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(
        f"the server did not serve within {SERVER_START_TIMEOUT_S} s:\n{log_path.read_text()}"
    )


@contextmanager
def serve_store(
    store: Path, model_name: str, log_path: Path, *, engine: str = "torch"
) -> Iterator[ServerProcess]:
    """`python -m local_endpoint` serving `model_name` from `store`; must stop cleanly on Ctrl-C."""
    arguments = ["--store", str(store), "--model-name", model_name, "--engine", engine]
    running = start_server("local_endpoint", arguments, log_path)
    yield running
    assert running.stop(signal.SIGINT) == 0, running.log()
