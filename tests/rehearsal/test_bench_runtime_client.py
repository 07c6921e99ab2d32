"""The bench's init under the runtime client: new execution environments started, timed and checked."""

from pathlib import Path

import pytest

from bench.child import BenchFailure
from bench.runtime_client import measure_runtime_client
from lambda_rehearsal.runtime_api import INIT_LIMIT_S
from lambda_src.contract import ENV_MODEL_NAME, ENV_MODEL_STORE
from model_training.publishing import publish
from tests.rehearsal.conftest import MODEL_NAME
from tests.support.images import coloured_image, encode

pytestmark = pytest.mark.slow


def test_init_and_the_first_response_are_timed_and_a_failing_function_stops_the_bench(
    shared_dir: Path, empty_store: Path, training_output: Path
) -> None:
    photo = encode(coloured_image("red", seed=5), "JPEG")
    store = shared_dir / "bench-store"
    publish(training_output, str(store), model_name=MODEL_NAME, progress=False)
    # When the bench starts an environment serving a published model
    measured = measure_runtime_client(
        shared_dir, {"local": {ENV_MODEL_STORE: str(store), ENV_MODEL_NAME: MODEL_NAME}}, photo, repeats=1
    )
    # Then it timed that one environment's init (within Lambda's limit) and its first answer
    init, response = measured["local"]["init_s"], measured["local"]["first_response_s"]
    assert len(init["runs"]) == len(response["runs"]) == 1
    assert 0 < init["median"] < INIT_LIMIT_S
    assert response["median"] > 0
    assert measured["command"].startswith("python -m awslambdaric ")
    # And a function that cannot answer 200 (no model published) is no figure: the bench stops
    with pytest.raises(BenchFailure, match="503"):
        measure_runtime_client(
            shared_dir,
            {"local": {ENV_MODEL_STORE: str(empty_store), ENV_MODEL_NAME: MODEL_NAME}},
            photo,
            repeats=1,
        )
