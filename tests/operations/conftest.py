"""Smoke-test fixtures: a real tiny model published to a local store, served by `python -m local_endpoint`,
and a tiny real HTTP server whose answers each test chooses (errors, other versions, API keys)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from model_training.publishing import publish
from model_training.training import TrainingConfig, save_output, train
from tests.support.local_server import ServerProcess, serve_store

MODEL_NAME = "smoke-shapes"


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local store with version v1 of a real resnet18, trained for one step at 32 px (about 2 s)."""
    config = TrainingConfig(
        model_name=MODEL_NAME, demo_images_per_class=4, epochs=1, max_steps=1, image_size=32, batch_size=16
    )
    result = train(config, progress=False, note=lambda _: None)
    store = tmp_path_factory.mktemp("smoke-store")
    publish(save_output(result, tmp_path_factory.mktemp("smoke-training")), str(store), progress=False)
    assert (store / MODEL_NAME / "LATEST").read_text().strip() == "v1"
    return store


@pytest.fixture(scope="session")
def local_endpoint(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`python -m local_endpoint` serving the store on a free port of 127.0.0.1."""
    log_path = tmp_path_factory.mktemp("smoke-server") / "server.log"
    with serve_store(model_store, MODEL_NAME, log_path) as running:
        yield running


@pytest.fixture
def free_port_url() -> str:
    """A URL where nothing listens: the port was free a moment ago and is closed again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/"


Answer = tuple[int, dict[str, Any]]
Route = Callable[[BaseHTTPRequestHandler], Answer]


def health_answer(version: str = "v1") -> Answer:
    return 200, {
        "status": "ok",
        "model": {"name": MODEL_NAME, "version": version, "architecture": "resnet18", "num_classes": 4},
    }


def predict_answer(version: str = "v1") -> Answer:
    predictions = [
        {"label": "circle", "index": 0, "score": 0.7},
        {"label": "square", "index": 2, "score": 0.2},
    ]
    return 200, {
        "model": {"name": MODEL_NAME, "version": version},
        "top_k": 2,
        "results": [{"predictions": predictions}],
    }


def error_answer(status: int, code: str, message: str) -> Answer:
    return status, {"error": {"code": code, "message": message}}


@pytest.fixture
def scripted_endpoint() -> Iterator[Callable[..., str]]:
    """scripted_endpoint(health=..., predict=...) -> the base URL of a real HTTP server giving those answers.

    Each route is a function of the request handler returning (status, JSON body).
    """
    servers: list[ThreadingHTTPServer] = []

    def start(*, health: Route, predict: Route) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(health if self.path == "/v1/health" else _not_found)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer(predict if self.path.startswith("/v1/predict") else _not_found)

            def _answer(self, route: Route) -> None:
                status, body = route(self)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _not_found(_: BaseHTTPRequestHandler) -> Answer:
    return error_answer(404, "not_found", "no such route")
