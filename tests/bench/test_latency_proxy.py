"""The proxy the benchmark puts in front of moto: bytes intact, a network's delay added."""

import socket
import threading
import time

from bench.latency_proxy import LatencyProxy, Link


def echo_server() -> tuple[socket.socket, tuple[str, int]]:
    """A server that echoes every byte back until the client closes (one connection)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[:2]


def round_trip(address: tuple[str, int], payload: bytes) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(address) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        received = b""
        while data := client.recv(65536):
            received += data
    return received, time.monotonic() - started


def test_bytes_arrive_intact_after_the_delay_each_way_and_no_faster_than_the_bandwidth():
    # Given an echo server behind a proxy adding 50 ms each way and 10 MB/s per direction
    listener, address = echo_server()
    payload = bytes(range(256)) * 4096  # 1 MiB
    with listener, LatencyProxy(address, Link(one_way_delay_s=0.05, bytes_per_s=10e6)) as proxy:
        host, port = proxy.endpoint.removeprefix("http://").split(":")
        # When 1 MiB goes there and back
        received, seconds = round_trip((host, int(port)), payload)
    # Then every byte comes back, after at least the two delays and the transfer at that rate
    assert received == payload
    assert seconds >= 2 * 0.05 + len(payload) / 10e6
