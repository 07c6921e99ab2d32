"""Init under AWS's runtime interface client, as the image runs it, timed from outside the process.

    python -m bench.runtime_client [--models MODEL ...] [--repeats N]

Each run starts a new execution environment the way the rehearsal tier does (`lambda_rehearsal`):
the image's read-only task root, `python -m awslambdaric lambda_src.handler.lambda_handler`
with Lambda's reserved variables, against the Runtime API emulator. Init is the time from
spawning that process to the emulator seeing its first `/runtime/invocation/next`; then one
raw-JPEG request is timed from handing it over to getting the answer back. Run as root, the
client runs as `nobody` with the system Python, as the rehearsal does. The standalone command
publishes the models like `python -m bench` and prints the figures with their table.
"""

from __future__ import annotations

import argparse
import getpass
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.artifacts import PublishedModel
from bench.child import BenchFailure
from bench.events import raw_image_event
from bench.harness import MODELS, Bench, function_env, published_models, settings_for
from bench.report import runtime_client_table
from bench.stats import summarise_s
from lambda_rehearsal.function import (
    UNPRIVILEGED_USER,
    Function,
    build_task_root,
    interpreter,
    make_writable,
    runs_unprivileged,
)
from lambda_src.contract import API_HANDLER

# Generous: the bench times the function; the rehearsal tests hold it to the deployed timeout.
INVOCATION_TIMEOUT_S = 60.0


def measure_runtime_client_of(bench: Bench, model: PublishedModel) -> dict[str, Any]:
    """Init and first response under AWS's runtime interface client, from each of the bench's stores."""
    environments = {
        store: function_env(bench.store_uri(store), model.model_name, bench.s3_endpoint)
        for store in ("local", "s3")
    }
    return measure_runtime_client(
        bench.workdir, environments, bench.photo_path.read_bytes(), bench.settings.cold_repeats
    )


def measure_runtime_client(
    folder: Path, environments: dict[str, dict[str, str]], photo: bytes, repeats: int
) -> dict[str, Any]:
    """`repeats` new environments per store (environments: store -> the function's own variables).

    `folder` must be readable by everyone (the client may run as `nobody`).
    """
    task_root = build_task_root(Path(tempfile.mkdtemp(prefix="task-root-", dir=folder)))
    runs: dict[str, list[tuple[float, float]]] = {store: [] for store in environments}
    try:
        for _ in range(repeats):  # stores interleaved, so a slower spell of the machine hits both
            for store, environment in environments.items():
                runs[store].append(first_start(task_root, folder, environment, photo))
    finally:
        make_writable(task_root)
    result: dict[str, Any] = {"command": f"python -m awslambdaric {API_HANDLER}", "runs_as": runs_as()}
    for store, timings in runs.items():
        result[store] = {
            "init_s": summarise_s([init_s for init_s, _ in timings]),
            "first_response_s": summarise_s([response_s for _, response_s in timings]),
        }
    return result


def first_start(
    task_root: Path, folder: Path, environment: dict[str, str], photo: bytes
) -> tuple[float, float]:
    """(init s, first response s) of one new execution environment."""
    work_dir = Path(tempfile.mkdtemp(prefix="function-", dir=folder))
    work_dir.chmod(0o755)
    function = Function(task_root, environment, work_dir=work_dir, timeout_s=INVOCATION_TIMEOUT_S)
    try:
        function.start()
        if function.api.init_error is not None:
            raise BenchFailure(f"init failed: {function.api.init_error}\n{function.log()[-3000:]}")
        asked = time.monotonic()
        response = function.invoke(raw_image_event(photo))
        response_s = time.monotonic() - asked
    finally:
        function.stop()
    if response.get("statusCode") != 200:
        raise BenchFailure(f"the function answered {response.get('statusCode')}: {response.get('body')}")
    assert function.init_s is not None
    return function.init_s, response_s


def runs_as() -> dict[str, str]:
    """The interpreter and the user the runtime client runs with."""
    python, _ = interpreter()
    return {"python": python, "user": UNPRIVILEGED_USER if runs_unprivileged() else getpass.getuser()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.runtime_client", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["resnet18"], help="default: resnet18")
    parser.add_argument("--repeats", type=int, default=3, help="new environments per store (default 3)")
    arguments = parser.parse_args(argv)
    if arguments.repeats < 1:
        parser.error("--repeats must be 1 or more")
    settings = replace(settings_for(tuple(arguments.models)), cold_repeats=arguments.repeats)
    with published_models(settings) as (bench, published):
        results = {
            name: {"runtime_client_init": measure_runtime_client_of(bench, model)}
            for name, model in published.items()
        }
    print(json.dumps(results, indent=2))
    print(runtime_client_table(results))


if __name__ == "__main__":
    main()
