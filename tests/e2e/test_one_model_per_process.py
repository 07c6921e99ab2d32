"""The local endpoint imports the real handler module once: one process serves one model location."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from lambda_src.model_store import ModelLocation
from local_endpoint.cli import load_function

first = ModelLocation(sys.argv[1], "first")
module = load_function(first)
assert load_function(ModelLocation(sys.argv[1], "first")) is module  # the same location: the same handler
try:
    load_function(ModelLocation(sys.argv[1], "second"))
except ValueError as error:
    print(error)
else:
    print("served the first model for the second location")
"""


def test_a_second_different_location_in_one_process_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "TORCH_NUM_THREADS": "1"},
        timeout=180,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    message = finished.stdout.strip().splitlines()[-1]
    assert message.startswith(
        f"this process already serves first (latest) from {tmp_path} with torch; it cannot also serve "
    )
    assert f"second (latest) from {tmp_path}" in message
    assert "start another process" in message
