"""A threaded HTTP server on 127.0.0.1 that invokes a Lambda handler the way API Gateway does.

The handler is injected: `LocalEndpoint(("127.0.0.1", 8080), lambda_handler)`. Each
connection gets its own thread and carries one request (`Connection: close`), so
concurrent clients are served concurrently by the same, already loaded handler, the
way one warm function would serve them one after another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from lambda_src.contract import API_GATEWAY_MAX_BODY_BYTES, IMAGE_MEDIA_TYPES, LAMBDA_MAX_PAYLOAD_BYTES
from lambda_src.errors import BadRequest
from local_endpoint import gateway, web
from local_endpoint.lambda_context import FunctionSettings, new_context, new_log_stream_name

LambdaHandler = Callable[[dict[str, Any], Any], Any]

_DRAIN_LIMIT_BYTES = 4 * API_GATEWAY_MAX_BODY_BYTES  # read and drop this much of a refused body
_READ_CHUNK_BYTES = 64 * 1024
# Total time a client has to send its request line and headers, and then its whole request:
# a client trickling bytes never trips a per-read timeout, so each has a total bound too.
REQUEST_HEAD_BOUND_S = 10.0
REQUEST_BOUND_S = 60.0


class _Refused(Exception):
    """The request is answered before the function runs."""

    def __init__(self, response: gateway.HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


class LocalEndpoint(ThreadingHTTPServer):
    """An HTTP server that turns requests into proxy events for `handler`."""

    # Wait for requests in flight when shutting down instead of killing their threads.
    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: LambdaHandler,
        *,
        function: FunctionSettings | None = None,
        stage: str = gateway.DEFAULT_STAGE,
        binary_media_types: Iterable[str] = IMAGE_MEDIA_TYPES,
        max_body_bytes: int = API_GATEWAY_MAX_BODY_BYTES,
        log: Callable[[dict[str, Any]], None] | None = None,
        request_head_bound_s: float = REQUEST_HEAD_BOUND_S,
        request_bound_s: float = REQUEST_BOUND_S,
    ) -> None:
        super().__init__(address, _ProxyRequestHandler)
        self.log = log or log_line
        self.lambda_handler = handler
        self.function = function or FunctionSettings()
        self.stage = stage
        self.binary_media_types = tuple(binary_media_types)
        self.max_body_bytes = max_body_bytes
        self.request_head_bound_s = request_head_bound_s
        self.request_bound_s = request_bound_s
        self.log_stream_name = new_log_stream_name()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request is not a server error worth a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            self.log({"message": "client connection lost", "ip": client_address[0], "error": str(error)})
            return
        super().handle_error(request, client_address)


def log_line(record: dict[str, Any]) -> None:
    """One JSON line on stderr (one write, so concurrent lines do not interleave)."""
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


class _ProxyRequestHandler(BaseHTTPRequestHandler):
    """Reads one HTTP request, invokes the handler with its proxy event, writes the answer."""

    server: LocalEndpoint
    protocol_version = "HTTP/1.1"  # needed to answer `Expect: 100-continue` (curl sends it above 1 MB)
    server_version = "local-endpoint"
    timeout = 30  # seconds a client may stall while sending its request (and total bounds below)

    def setup(self) -> None:
        super().setup()
        self._connected_at = time.monotonic()
        self._timed_out = False
        self._cut_off_timer: threading.Timer | None = None
        self._cut_off_after(self.server.request_head_bound_s)

    def finish(self) -> None:
        self._cut_off_after(None)
        super().finish()

    def _cut_off_after(self, seconds: float | None) -> None:
        """Stop reading from the client after `seconds` (None: never); it then gets a 408."""
        if self._cut_off_timer is not None:
            self._cut_off_timer.cancel()
            self._cut_off_timer = None
        if seconds is not None:
            self._cut_off_timer = threading.Timer(max(0.0, seconds), self._cut_off)
            self._cut_off_timer.daemon = True
            self._cut_off_timer.start()

    def _cut_off(self) -> None:
        self._timed_out = True
        with contextlib.suppress(OSError):  # the client may be gone already
            self.connection.shutdown(socket.SHUT_RD)  # the blocked read ends at once

    def parse_request(self) -> bool:
        if self._timed_out:  # cut off before the request line was in
            self.command = None  # type: ignore[assignment]  # as http.server has it before parsing
            self._send_timeout()
            return False
        parsed = super().parse_request()
        if self._timed_out:  # the headers ended because reading was cut off, not by the client
            self._send_timeout()
            return False
        if parsed:  # the head is in: the rest of the request has what is left of the total bound
            elapsed = time.monotonic() - self._connected_at
            self._cut_off_after(self.server.request_bound_s - elapsed)
        return parsed

    def _send_timeout(self) -> None:
        request_id = gateway.new_request_id()
        self.request_version = self.protocol_version
        bound = self.server.request_head_bound_s
        message = f"the request was not sent in time (the request line and headers within {bound:g} s)"
        refusal = gateway.error_response(BadRequest(message), request_id)
        response = dataclasses.replace(refusal, status=HTTPStatus.REQUEST_TIMEOUT)
        with contextlib.suppress(OSError):
            self._send(response)
            self._access_log(request_id, response, self._connected_at)
        self.close_connection = True

    def do_GET(self) -> None:
        if not self._serve_web_page():
            self._proxy()

    def do_HEAD(self) -> None:
        if not self._serve_web_page():
            self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_PATCH(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def do_OPTIONS(self) -> None:
        self._proxy()

    def __getattr__(self, name: str) -> Any:
        # Any other method token (TRACE, PROPFIND, ...) goes to the handler too, whose router
        # answers 405 or 404, where http.server would answer 501.
        if name.startswith("do_"):
            return self._proxy
        raise AttributeError(name)

    def handle_expect_100(self) -> bool:
        # Refuse an oversized body before the client sends it, as API Gateway does.
        request_id = gateway.new_request_id()
        try:
            self._declared_length(request_id)
        except _Refused as refused:
            self._send(refused.response)
            self._access_log(request_id, refused.response, time.monotonic())
            return False
        return super().handle_expect_100()

    def _serve_web_page(self) -> bool:
        """Answer GET/HEAD of the browser page and API docs (local_endpoint/web.py) without the function."""
        path = urlsplit(self.path).path
        if not web.handles(self.command, path):
            return False
        started = time.monotonic()
        response = web.response_for(path)
        self._send(response)
        self._access_log(gateway.new_request_id(), response, started)
        return True

    def _proxy(self) -> None:
        started = time.monotonic()
        request_id = gateway.new_request_id()
        self._integration_latency_ms: float | None = None
        try:
            body = self._read_body(request_id)
            self._cut_off_after(None)  # the request is in: the function takes what it takes
            if self._timed_out:
                raise _Refused(self._request_timeout(request_id))
            response = self._invoke(body, request_id)
        except _Refused as refused:
            response = refused.response
        self._send(response)
        self._access_log(request_id, response, started)

    def _request_timeout(self, request_id: str) -> gateway.HttpResponse:
        bound = self.server.request_bound_s
        message = f"the request was not sent in time (the whole request within {bound:g} s)"
        refusal = gateway.error_response(BadRequest(message), request_id)
        self.close_connection = True
        return dataclasses.replace(refusal, status=HTTPStatus.REQUEST_TIMEOUT)

    def _invoke(self, body: bytes, request_id: str) -> gateway.HttpResponse:
        request = gateway.HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        event = gateway.build_event(
            request,
            request_id=request_id,
            now_s=time.time(),
            server_port=self.server.server_address[1],
            stage=self.server.stage,
            binary_media_types=self.server.binary_media_types,
        )
        event_size = len(json.dumps(event))
        if event_size > LAMBDA_MAX_PAYLOAD_BYTES:
            return gateway.event_too_large(event_size, request_id)
        context = new_context(self.server.function, self.server.log_stream_name)
        invoked = time.monotonic()
        try:
            proxy_response = self.server.lambda_handler(event, context)
        except Exception as error:
            # Lambda logs the unhandled error; API Gateway answers 502 without details.
            self.server.log(
                {
                    "level": "ERROR",
                    "message": "the function raised an unhandled exception",
                    "requestId": request_id,
                    "errorType": type(error).__name__,
                    "errorMessage": str(error),
                    "stackTrace": traceback.format_exception(error),
                }
            )
            return gateway.internal_server_error(request_id)
        finally:
            self._integration_latency_ms = (time.monotonic() - invoked) * 1000
        return self._to_http(proxy_response, request_id)

    def _to_http(self, proxy_response: Any, request_id: str) -> gateway.HttpResponse:
        try:
            size = len(json.dumps(proxy_response))
            if size > LAMBDA_MAX_PAYLOAD_BYTES:
                raise gateway.MalformedProxyResponse(
                    f"the response is {size} bytes; Lambda returns at most {LAMBDA_MAX_PAYLOAD_BYTES}"
                )
            return gateway.to_http_response(
                proxy_response,
                request_id=request_id,
                accept=self.headers.get("Accept"),
                binary_media_types=self.server.binary_media_types,
            )
        except (gateway.MalformedProxyResponse, TypeError, ValueError) as error:
            self.server.log(
                {
                    "level": "ERROR",
                    "message": f"Execution failed: malformed Lambda proxy response: {error}",
                    "requestId": request_id,
                }
            )
            return gateway.internal_server_error(request_id)

    def _declared_length(self, request_id: str) -> int | None:
        """Content-Length as an int (None when absent); refuses invalid or oversized values."""
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        if not raw.strip().isdigit():
            self.close_connection = True
            raise _Refused(gateway.error_response(BadRequest(f"invalid Content-Length {raw!r}"), request_id))
        length = int(raw)
        if length > self.server.max_body_bytes:
            self.close_connection = True
            raise _Refused(gateway.body_too_large(length, request_id))
        return length

    def _read_body(self, request_id: str) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(request_id)
        try:
            length = self._declared_length(request_id)
        except _Refused as refused:
            if refused.response.status == 413:
                self._drain(int(self.headers["Content-Length"]))
            raise
        if not length:
            return b""
        body = self.rfile.read(length)
        if len(body) < length:
            if self._timed_out:
                raise _Refused(self._request_timeout(request_id))
            raise ConnectionResetError("the client closed the connection before sending its whole body")
        return body

    def _read_chunked(self, request_id: str) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise _Refused(
                    gateway.error_response(BadRequest("malformed chunked request body"), request_id)
                ) from None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # skip trailers
                return b"".join(chunks)
            total += size
            if total > self.server.max_body_bytes:
                self.close_connection = True
                raise _Refused(gateway.body_too_large(total, request_id))
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _drain(self, length: int) -> None:
        """Read and drop a refused body so the client gets to read our answer."""
        if length > _DRAIN_LIMIT_BYTES:
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, _READ_CHUNK_BYTES))
            if not chunk:
                return
            remaining -= len(chunk)

    def _send(self, response: gateway.HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self.close_connection = True

    def _access_log(self, request_id: str, response: gateway.HttpResponse, started: float) -> None:
        """The stage's access log line (same fields as the deployed API's, latencies in ms)."""
        integration = getattr(self, "_integration_latency_ms", None)
        self.server.log(
            {
                "requestId": request_id,
                "ip": self.client_address[0],
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
                "httpMethod": self.command,
                "resourcePath": urlsplit(getattr(self, "path", "")).path,  # unset if the request line is bad
                "status": response.status,
                "protocol": self.request_version,
                "responseLength": len(response.body),
                "responseLatency": round((time.monotonic() - started) * 1000),
                "integrationLatency": None if integration is None else round(integration),
            }
        )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, huge headers, HTTP/2.0) as JSON 4xx, access-logged.

        They are all the client's doing: the 505 for a request line claiming HTTP/2.0 becomes a 400.
        """
        started = time.monotonic()
        request_id = gateway.new_request_id()
        # Before the request line is read, http.server takes the client for HTTP/0.9 and would
        # send the body alone; every client of this server understands a status line and headers.
        self.request_version = self.protocol_version
        refusal = gateway.error_response(BadRequest(message or HTTPStatus(code).phrase), request_id)
        response = dataclasses.replace(refusal, status=code if code < 500 else HTTPStatus.BAD_REQUEST)
        try:
            self._send(response)
        except OSError:
            return  # the client is gone: nothing to answer
        self._access_log(request_id, response, started)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # replaced by the one-line JSON access log written after each response

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log({"message": format % args, "ip": self.client_address[0]})


def serve_until_stopped(server: LocalEndpoint) -> None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then finish requests in flight and return."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            server.log({"message": f"received {signal.Signals(signum).name}, stopping"})
            # shutdown() waits for serve_forever(), which runs on this (the main) thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
