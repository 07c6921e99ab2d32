"""The real entry point in a fresh interpreter, as a Lambda cold start runs it.

The environment names a model in a local folder (the local endpoint's store); the
module loads it at import, then `lambda_handler` answers events. Its stdout is the
function's log stream: JSON log lines and EMF metric lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.events import api_gateway_event, json_event
from tests.support.images import b64, coloured_image, encode
from tests.support.tiny_model import publish

REPO_ROOT = Path(__file__).resolve().parents[2]

COLD_START = """
import json, sys
events = json.load(sys.stdin)
import lambda_src.handler as handler  # the init phase: the model loads here
for event in events:
    response = handler.lambda_handler(event, None)
    print("RESPONSE " + json.dumps(response), flush=True)
print("COMPILER IMPORTED " + json.dumps("torch._dynamo" in sys.modules))
"""


@pytest.mark.slow
def test_a_cold_start_loads_the_model_at_init_and_serves_events(tmp_path: Path, tiny_weights: bytes) -> None:
    store = tmp_path / "store"

    def write(key: str, data: bytes) -> None:
        (store / key).parent.mkdir(parents=True, exist_ok=True)
        (store / key).write_bytes(data)

    publish(write, prefix="", model_name="colours", version="v1", weights=tiny_weights)
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),
        "MODEL_STORE": str(store),
        "MODEL_NAME": "colours",
        "TORCH_NUM_THREADS": "1",
        "POWERTOOLS_SERVICE_NAME": "cold-start-test",
    }
    events = [
        api_gateway_event("GET", "/health"),
        json_event({"image": b64(encode(coloured_image("blue", seed=40), "PNG"))}),
    ]
    finished = subprocess.run(
        [sys.executable, "-c", COLD_START],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=180,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    responses = [json.loads(line.removeprefix("RESPONSE ")) for line in lines if line.startswith("RESPONSE ")]
    assert [r["statusCode"] for r in responses] == [200, 200]
    assert json.loads(responses[1]["body"])["results"][0]["predictions"][0]["label"] == "blue"

    records = [json.loads(line) for line in lines if line.startswith("{")]
    loaded = next(r for r in records if r.get("message") == "model loaded")
    assert loaded["service"] == "cold-start-test"
    assert loaded["phases_ms"]["imports"] > 0  # importing torch and the runtime, timed
    assert loaded["torch_threads"] == 1
    requests = [r for r in records if r.get("message") == "request"]
    assert [r["cold_start"] for r in requests] == [True, False]
    assert all(r["model_version"] == "v1" for r in requests)
    namespaces = {r["_aws"]["CloudWatchMetrics"][0]["Namespace"] for r in records if "_aws" in r}
    assert namespaces == {"PyTorchInference"}
    assert "Traceback" not in finished.stdout + finished.stderr
    # Serving keeps torch._dynamo out (lambda_src/lean_imports.py): ~0.8 s of every cold start.
    assert "COMPILER IMPORTED false" in lines
