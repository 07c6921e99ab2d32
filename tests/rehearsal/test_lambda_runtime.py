"""The handler run the way Lambda runs the image: awslambdaric, a read-only task root, a non-root user,
the deployed environment, and Lambda's limits (10 s init, the function's timeout, 6 MB responses).

Each execution environment costs a torch import (2-4 s here), so each test starts one and takes
it through as many requests as its story allows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lambda_src.contract import ENV_MODEL_NAME
from model_training.publishing import publish
from tests.rehearsal.conftest import FunctionConfig, StartFunction
from tests.rehearsal.function import HANDLER
from tests.runtime.support import api_gateway_event, b64, coloured_image, encode, json_event

pytestmark = pytest.mark.slow


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def health(function: Any) -> dict[str, Any]:
    return function.invoke(api_gateway_event("GET", "/health"))


def test_a_model_published_after_start_is_served_health_and_predict(
    start_function: StartFunction, empty_store: Path, training_output: Path, function_config: FunctionConfig
) -> None:
    model_name = function_config.environment[ENV_MODEL_NAME]  # the deployed function's model
    # Given an environment started before any model is published (retrying loads at once)
    function = start_function(store=empty_store, MODEL_RETRY_SECONDS=0)
    # Then it initialised and answers 503 with the reason
    unavailable = health(function)
    assert unavailable["statusCode"] == 503
    assert body(unavailable)["error"]["code"] == "model_unavailable"
    # When the trainer publishes a model
    publish(training_output, str(empty_store), model_name=model_name, progress=False)
    # Then the same environment serves it: health, then a prediction through the image's code
    ready = health(function)
    assert ready["statusCode"] == 200, ready
    assert body(ready)["model"] == {
        "name": model_name,
        "version": "v1",
        "architecture": "resnet18",
        "num_classes": 3,
    }
    image = encode(coloured_image("green", seed=7), "PNG")
    predicted = function.invoke(json_event({"image": b64(image)}))
    assert predicted["statusCode"] == 200, predicted
    assert body(predicted)["results"][0]["predictions"][0]["label"] == "green"
    raw = function.invoke(api_gateway_event("POST", "/predict", body=image, content_type="image/png"))
    assert body(raw)["results"] == body(predicted)["results"]
    # And the process ran as the image's non-root user and wrote nothing outside its /tmp
    assert function.process is not None
    if os.geteuid() == 0:
        assert Path(f"/proc/{function.process.pid}").stat().st_uid != 0
    assert "Traceback" not in function.log()


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("lambda_src.no_such_module.lambda_handler", "Runtime.ImportModuleError"),
        ("lambda_src.handler.no_such_function", "Runtime.HandlerNotFound"),
    ],
)
def test_a_broken_handler_string_is_an_init_error_reported_to_lambda(
    start_function: StartFunction, empty_store: Path, handler: str, error_type: str
) -> None:
    assert handler != HANDLER
    function = start_function(store=empty_store, handler=handler)
    assert function.api.init_error is not None
    assert function.api.init_error["errorType"] == error_type
    assert function.api.init_error_type == error_type
    assert function.exited(within_s=10) not in {None, 0}  # the runtime exits; Lambda retries init later
