"""`python -m local_endpoint.demo` (what `make demo` runs) on a store that already has the model.

The first-run path (training the full demo model) takes a minute or more, so CI runs
it through `make demo` (.ci/run); here the demo must find the published version,
skip training, print the page's URL first and curl lines that work exactly as printed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request

from model_training.demo_data import DEMO_CLASSES
from tests.e2e.conftest import MODEL_NAME
from tests.support.local_server import REPO_ROOT, start_server


def test_demo_skips_training_and_its_printed_curl_lines_work(model_store, published_version, tmp_path):
    examples = tmp_path / "examples"
    args = ["--store", str(model_store), "--model-name", MODEL_NAME, "--examples", str(examples)]
    demo = start_server("local_endpoint.demo", args, tmp_path / "demo.log")
    try:
        output = demo.log()
        assert f"Found {MODEL_NAME} version {published_version}" in output
        assert "training the demo model" not in output
        assert sorted(path.name for path in examples.iterdir()) == [f"{name}-1.jpg" for name in DEMO_CLASSES]
        page_url = output.split("Open ", 1)[1].split(" ", 1)[0]
        assert page_url == f"{demo.url}/"
        with urllib.request.urlopen(page_url, timeout=30) as page:
            assert b"<title>Classify an image</title>" in page.read()
        curl_lines = [line.strip() for line in output.splitlines() if line.startswith("  curl ")]
        assert len(curl_lines) == 3

        for line in curl_lines:
            result = subprocess.run(
                ["bash", "-c", line], cwd=REPO_ROOT, capture_output=True, timeout=60, check=True
            )
            body = json.loads(result.stdout)
            if "/predict" in line:
                assert body["model"] == {"name": MODEL_NAME, "version": published_version}
                assert body["results"][0]["predictions"][0]["label"] in DEMO_CLASSES
            else:
                assert body["status"] == "ok"
    finally:
        exit_code = demo.stop(signal.SIGTERM)

    assert exit_code == 0
    assert demo.log().rstrip().endswith("Stopped.")
    assert "Traceback" not in demo.log()
