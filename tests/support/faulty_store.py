"""A real S3 endpoint (moto's server) behind a proxy on 127.0.0.1 misbehaving on the requests a test picks.

Faults a store can have that per-read timeouts do not catch, each on real sockets:

    DRIP_BODY     answers (status and headers at once), then sends the body a byte a second
    DRIP_HEADERS  sends the status line, then its headers a byte a second
    STALL         reads the request and never answers (what a part after the first meets
                  when a store stops after the first part)

Everything else is forwarded to moto unchanged.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import boto3
from moto.server import ThreadedMotoServer

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
DRIP_INTERVAL_S = 1.0  # a byte a second: never a 2 s silence, so no read timeout trips


class Fault(Enum):
    DRIP_BODY = "drip body"
    DRIP_HEADERS = "drip headers"
    STALL = "stall"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query
    headers: dict[str, str]  # lower-case names

    def byte_range_start(self) -> int | None:
        """Where a ranged GET starts (`Range: bytes=START-END`), None without a Range."""
        value = self.headers.get("range")
        return int(value.removeprefix("bytes=").partition("-")[0]) if value else None


FaultRule = Callable[[Request], Fault | None]


@dataclass
class FaultyStore:
    """The proxy's URL (for AWS_ENDPOINT_URL_S3), a client straight to moto, and what was asked."""

    url: str
    client: Any  # boto3 S3 client to moto itself: publishing is never faulted
    rule: FaultRule
    requests: list[Request] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


@contextmanager
def faulty_store(rule: FaultRule, *, bucket: str = "model-bucket") -> Iterator[FaultyStore]:
    """A moto server with `bucket`, behind a proxy applying `rule` to each request; stopped on exit."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=bucket)
    store = FaultyStore(url="", client=client, rule=rule)
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(store, (host, port)))
    proxy.daemon_threads = True
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    store.url = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        yield store
    finally:
        store.stop.set()
        proxy.shutdown()
        proxy.server_close()
        moto.stop()


def weights_parts_after_the_first(fault: Fault) -> FaultRule:
    """`fault` on every ranged GET of a model.pt that does not start at byte 0."""

    def rule(request: Request) -> Fault | None:
        start = request.byte_range_start()
        return fault if request.path.endswith("/model.pt") and start else None

    return rule


def every_get_of(suffix: str, fault: Fault) -> FaultRule:
    """`fault` on every GET of a key ending in `suffix`."""
    return lambda request: fault if request.method == "GET" and request.path.endswith(suffix) else None


def _handler_for(store: FaultyStore, target: tuple[str, int]) -> type[BaseHTTPRequestHandler]:
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._forward()

        def do_HEAD(self) -> None:
            self._forward()

        def do_PUT(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def do_DELETE(self) -> None:
            self._forward()

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = Request(
                self.command, urlsplit(self.path).path, {k.lower(): v for k, v in self.headers.items()}
            )
            store.requests.append(request)
            fault = store.rule(request)
            if fault is Fault.STALL:
                store.stop.wait()
                self.close_connection = True
                return
            upstream = http.client.HTTPConnection(*target, timeout=30)
            upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
            answer = upstream.getresponse()
            payload = answer.read()
            upstream.close()
            try:
                if fault is Fault.DRIP_HEADERS:
                    self._drip(f"HTTP/1.1 {answer.status} {answer.reason}\r\n".encode(), at_once=True)
                    head = "".join(f"{name}: {value}\r\n" for name, value in answer.getheaders())
                    self._drip(head.encode() + b"\r\n" + payload)
                    return
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in {"connection", "transfer-encoding", "date", "server"}:
                        self.send_header(name, value)
                self.end_headers()
                if self.command == "HEAD":
                    return
                if fault is Fault.DRIP_BODY:
                    self._drip(payload)
                else:
                    self.wfile.write(payload)
            except OSError:  # the client gave up on us: what the test wants to see
                self.close_connection = True

        def _drip(self, data: bytes, *, at_once: bool = False) -> None:
            if at_once:
                self.wfile.write(data)
                self.wfile.flush()
                return
            for index in range(len(data)):
                if store.stop.is_set():
                    break
                self.wfile.write(data[index : index + 1])
                self.wfile.flush()
                time.sleep(DRIP_INTERVAL_S)
            self.close_connection = True

    return Proxy
