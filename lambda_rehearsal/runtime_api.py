"""A Lambda Runtime API (2018-06-01) on 127.0.0.1, for running the image's runtime client in tests.

The runtime (awslambdaric) polls `GET /2018-06-01/runtime/invocation/next`, gets one event
with Lambda's headers, and posts the handler's answer to `.../{id}/response` or
`.../{id}/error`; an exception at import goes to `/runtime/init/error`. The emulator holds
the function to Lambda's limits: init must reach its first `next` within 10 s, each
invocation must answer within the function's timeout, and a response over 6 MB is refused
as Lambda refuses it. On a machine much slower than Lambda's (a busy shared one), the time
limits can be stretched by REHEARSAL_TIME_SCALE (default 1: Lambda's own limits).

SnapStart's lifecycle (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start): after init the runtime runs
the before-snapshot hooks and asks `GET /2018-06-01/runtime/restore/next`; that is where Lambda
takes the snapshot, so the emulator holds the answer until the test calls `restore()`. Then the
runtime runs the after-restore hooks and polls `invocation/next`; a failing hook is reported to
`/runtime/init/error` (Runtime.BeforeSnapshotError) or `/runtime/restore/error`
(Runtime.AfterRestoreError). A snapshot's init may run 130 s; a restore, its hooks included, 10 s.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lambda_src.contract import LAMBDA_MAX_PAYLOAD_BYTES

PREFIX = "/2018-06-01/runtime"
TIME_SCALE = float(os.environ.get("REHEARSAL_TIME_SCALE") or 1)
INIT_LIMIT_S = 10.0 * TIME_SCALE  # Lambda's on-demand init phase: 10 s
SNAPSHOT_INIT_LIMIT_S = 130.0 * TIME_SCALE  # init for a snapshot: 130 s (or the timeout, if longer)
RESTORE_LIMIT_S = 10.0 * TIME_SCALE  # a restore, the after-restore hooks included
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:InferenceFunction:live"


class LimitExceeded(AssertionError):
    """The function broke one of Lambda's limits (a test failure, as it would be a failure on Lambda)."""


@dataclass
class Invocation:
    """One event handed to the runtime and what came back."""

    event: dict[str, Any]
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    done: threading.Event = field(default_factory=threading.Event)
    headers: dict[str, str] = field(default_factory=dict)  # the headers `next` sent with it
    response: Any = None  # the handler's return value, decoded from JSON
    error: dict[str, Any] | None = None  # what the runtime posted to .../error
    refused: str | None = None  # why the emulator refused the answer (Lambda's error type)


class RuntimeApi(ThreadingHTTPServer):
    """The emulator: `invoke(event)` from a test, the runtime client on the other side."""

    daemon_threads = True

    def __init__(self, *, timeout_s: float, max_response_bytes: int = LAMBDA_MAX_PAYLOAD_BYTES) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.timeout_s = timeout_s * TIME_SCALE
        self.max_response_bytes = max_response_bytes
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.in_flight: dict[str, Invocation] = {}
        self.ready = threading.Event()  # the runtime asked for its first event: init is over
        self.ready_at: float | None = None  # when it asked (time.monotonic)
        self.init_error: dict[str, Any] | None = None
        self.init_error_type: str | None = None
        # SnapStart: the runtime asked restore/next (the snapshot point), the test let it restore.
        self.snapshot_taken = threading.Event()
        self.snapshot_at: float | None = None
        self.restoring = threading.Event()
        self.restore_error: dict[str, Any] | None = None
        self.restore_error_type: str | None = None
        self.closing = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def address(self) -> str:
        """The value of AWS_LAMBDA_RUNTIME_API."""
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def __enter__(self) -> RuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closing.set()
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a stopped environment hung up: expected
            super().handle_error(request, client_address)

    def wait_for_init(self, started: float, *, snap_start: bool = False) -> float:
        """Seconds from `started` (time.monotonic) until init ended; LimitExceeded past Lambda's limit.

        With `snap_start`, init ends when the runtime is ready to be snapshotted (restore/next).
        """
        limit_s = SNAPSHOT_INIT_LIMIT_S if snap_start else INIT_LIMIT_S
        deadline = started + limit_s
        while not (self.ready.is_set() or self.snapshot_taken.is_set()) and self.init_error is None:
            if time.monotonic() > deadline:
                raise LimitExceeded(f"init did not finish within Lambda's {limit_s:g} s")
            time.sleep(0.02)
        ended = self.snapshot_at if snap_start and self.snapshot_at else self.ready_at
        return (ended or time.monotonic()) - started

    def restore(self) -> float:
        """Answer restore/next, as Lambda resumes an environment from the snapshot; seconds until the
        runtime asks for its first event (or reports a restore error). LimitExceeded past 10 s.
        """
        if not self.snapshot_taken.is_set():
            raise AssertionError("the runtime never asked to be snapshotted (restore/next)")
        started = time.monotonic()
        self.restoring.set()
        while not self.ready.is_set() and self.restore_error is None:
            if time.monotonic() > started + RESTORE_LIMIT_S:
                raise LimitExceeded(f"the restore did not finish within Lambda's {RESTORE_LIMIT_S:g} s")
            time.sleep(0.005)
        return (self.ready_at or time.monotonic()) - started

    def invoke(self, event: dict[str, Any]) -> Invocation:
        """Hand `event` to the runtime and wait for its answer, at most the function's timeout."""
        invocation = Invocation(event)
        self.pending.put(invocation)
        if not invocation.done.wait(self.timeout_s):
            raise LimitExceeded(f"the invocation outlived the function's timeout ({self.timeout_s:g} s)")
        return invocation


class _Handler(BaseHTTPRequestHandler):
    server: RuntimeApi
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == f"{PREFIX}/restore/next":
            self._restore_next()
            return
        if self.path != f"{PREFIX}/invocation/next":
            self._reply(404, {"errorMessage": f"unknown path {self.path}"})
            return
        if not self.server.ready.is_set():
            self.server.ready_at = time.monotonic()
            self.server.ready.set()
        invocation = self._next_invocation()
        if invocation is None:
            return  # the emulator is closing: leave the runtime waiting, as a frozen environment would
        deadline_ms = int((time.time() + self.server.timeout_s) * 1000)
        invocation.headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
        }
        self.server.in_flight[invocation.request_id] = invocation
        self._reply(200, invocation.event, invocation.headers)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == f"{PREFIX}/init/error":
            self.server.init_error = json.loads(body)
            self.server.init_error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
            self._reply(202, {"status": "OK"})
            return
        if self.path == f"{PREFIX}/restore/error":
            self.server.restore_error = json.loads(body)
            self.server.restore_error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
            self._reply(202, {"status": "OK"})
            return
        _, _, rest = self.path.partition(f"{PREFIX}/invocation/")
        request_id, _, outcome = rest.partition("/")
        invocation = self.server.in_flight.pop(request_id, None)
        if invocation is None or outcome not in {"response", "error"}:
            self._reply(400, {"errorMessage": f"no invocation {request_id!r} in flight"})
            return
        if outcome == "error":
            invocation.error = json.loads(body)
        elif len(body) > self.server.max_response_bytes:
            invocation.refused = "Function.ResponseSizeTooLarge"
            invocation.done.set()
            too_large = {
                "errorMessage": "Exceeded maximum allowed payload size",
                "errorType": "RequestEntityTooLarge",
            }
            self._reply(413, too_large)
            return
        else:
            invocation.response = json.loads(body)
        invocation.done.set()
        self._reply(202, {"status": "OK"})

    def _restore_next(self) -> None:
        """The snapshot point: answer only once the test restores the environment."""
        self.server.snapshot_at = time.monotonic()
        self.server.snapshot_taken.set()
        while not self.server.restoring.wait(0.1):
            if self.server.closing.is_set():
                return  # never restored: the environment is dropped with the snapshot
        self._reply(200, {})

    def _next_invocation(self) -> Invocation | None:
        while not self.server.closing.is_set():
            try:
                return self.server.pending.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the runtime's requests are not the test's output
