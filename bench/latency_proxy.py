"""A TCP proxy that gives a loopback server a network's latency and bandwidth.

moto on 127.0.0.1 answers in microseconds; S3 seen from Lambda does not. The benchmark puts
this proxy in front of moto so that serving from "S3" pays a realistic price: every byte
arrives `one_way_delay_s` after it was sent (each way), and each direction of a connection
carries at most `bytes_per_s`: a chunk is passed on once the link would have delivered its
last byte, starting when it is due (arrival + delay) and the previous chunk is through.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Link:
    """What the network adds: a one-way delay and a per-direction bandwidth."""

    one_way_delay_s: float
    bytes_per_s: float


class LatencyProxy:
    """Listens on 127.0.0.1 and forwards each connection to `target` through `link`."""

    def __init__(self, target: tuple[str, int], link: Link) -> None:
        self.target = target
        self.link = link
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()

    @property
    def endpoint(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> LatencyProxy:
        self._spawn(self._accept_forever)
        return self

    def stop(self) -> None:
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def _accept_forever(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener was closed
                return
            server = socket.create_connection(self.target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sockets.append(sock)
            self._spawn(self._pipe, client, server)
            self._spawn(self._pipe, server, client)

    def _pipe(self, source: socket.socket, destination: socket.socket) -> None:
        """One direction: read as it comes, deliver each chunk when the link would have."""
        queue: deque[tuple[float, bytes]] = deque()
        ready = threading.Condition()
        self._spawn(self._deliver, queue, ready, destination)
        while True:
            try:
                data = source.recv(CHUNK_BYTES)
            except OSError:
                data = b""
            with ready:
                queue.append((time.monotonic() + self.link.one_way_delay_s, data))
                ready.notify()
            if not data:
                return

    def _deliver(
        self, queue: deque[tuple[float, bytes]], ready: threading.Condition, sock: socket.socket
    ) -> None:
        delivered_at = 0.0  # when the link finished delivering the previous chunk
        while True:
            with ready:
                while not queue:
                    ready.wait()
                due, data = queue.popleft()
            if not data:  # the other side closed: pass the end on
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                return
            # A chunk is through once its last byte is: it starts when it is due and the link is free.
            delivered_at = max(due, delivered_at) + len(data) / self.link.bytes_per_s
            time.sleep(max(0.0, delivered_at - time.monotonic()))
            try:
                sock.sendall(data)
            except OSError:
                return
