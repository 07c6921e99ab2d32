"""The handler run the way Lambda runs the image: awslambdaric, a read-only task root, a non-root user,
the deployed environment, and Lambda's limits (10 s init, the function's timeout, 6 MB responses).

Each execution environment costs a torch import (2-4 s here), so each test starts one and takes
it through as many requests as its story allows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from lambda_src.contract import API_HANDLER, ENV_MODEL_NAME, FUNCTION_VARIABLES
from lambda_src.model_store import LOAD_READ_BOUND_S, STORE_CALL_BOUND_S
from model_training.publishing import publish
from tests.rehearsal.conftest import FunctionConfig, StartFunction
from tests.support.events import api_gateway_event, json_event
from tests.support.faulty_store import Fault, every_get_of, faulty_store
from tests.support.images import b64, coloured_image, encode

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
    assert handler != API_HANDLER
    function = start_function(store=empty_store, handler=handler)
    assert function.api.init_error is not None
    assert function.api.init_error["errorType"] == error_type
    assert function.api.init_error_type == error_type
    assert function.exited(within_s=10) not in {None, 0}  # the runtime exits; Lambda retries init later


# One bad value for each setting the function reads, each a way operators get it wrong; those
# marked fallback run with the default and a warning (this store simply has no model yet).
BAD_SETTINGS = {
    "MAX_BATCH_SIZE": ("eight", "misconfigured"),
    "MAX_BODY_BYTES": ("-1", "misconfigured"),
    "MAX_IMAGE_PIXELS": ("1e6", "misconfigured"),
    "MODEL_RETRY_SECONDS": ("nan", "misconfigured"),
    "TORCH_NUM_THREADS": ("99999", "misconfigured"),
    "CORS_ALLOW_ORIGIN": ("https://app.example.com, https://other.example.com", "misconfigured"),
    "MODEL_STORE": ("ftp://models.example.com/models", "misconfigured"),
    "MODEL_NAME": ("../etc", "misconfigured"),
    "MODEL_VERSION": ("v1/../../x", "misconfigured"),
    "POWERTOOLS_SERVICE_NAME": ("x" * 2000, "fallback"),
    "POWERTOOLS_METRICS_NAMESPACE": ("AWS/Lambda", "fallback"),
    "POWERTOOLS_METRICS_DISABLED": ("maybe", "fallback"),
    "POWERTOOLS_LOG_LEVEL": ("LOUD", "fallback"),
    "POWERTOOLS_LOGGER_SAMPLE_RATE": ("abc", "fallback"),
    "POWERTOOLS_DEV": ("maybe", "fallback"),
    "POWERTOOLS_DEBUG": ("maybe", "fallback"),  # read when Powertools is imported
    "POWERTOOLS_LOG_DEDUPLICATION_DISABLED": ("x", "fallback"),
    "POWERTOOLS_LOGGER_LOG_EVENT": ("x", "fallback"),
    "POWERTOOLS_TRACE_DISABLED": ("x", "fallback"),
}


def test_every_setting_the_function_reads_is_rehearsed() -> None:
    assert set(BAD_SETTINGS) == set(FUNCTION_VARIABLES)


@pytest.mark.parametrize("variable", list(BAD_SETTINGS))
def test_a_bad_setting_never_stops_the_function_it_answers_503_with_the_reason(
    start_function: StartFunction, empty_store: Path, variable: str
) -> None:
    value, outcome = BAD_SETTINGS[variable]
    settings = {"store": empty_store, variable: value} if variable != "MODEL_STORE" else {"store": value}
    function = start_function(**settings)
    assert function.api.init_error is None, function.api.init_error
    for method, path in (("GET", "/health"), ("POST", "/predict")):
        answer = function.invoke(api_gateway_event(method, path, body="{}", content_type="application/json"))
        assert answer["statusCode"] == 503, answer
        error = body(answer)["error"]
        expected = "not_published" if outcome == "fallback" else "misconfigured"
        assert (error["code"], error["reason"]) == ("model_unavailable", expected)
        assert variable not in error["message"]  # the caller gets the reason, the log the details
    assert variable in function.log()  # the operator reads which setting to fix


def test_a_store_that_answers_then_drips_costs_a_bounded_init_and_503s_never_a_hang(
    start_function: StartFunction, training_output: Path, function_config: FunctionConfig
) -> None:
    # Given a published model behind an S3 endpoint that answers the weights, then sends a byte a second
    with faulty_store(every_get_of("/model.pt", Fault.DRIP_BODY), bucket="model-bucket") as store:
        publish(
            training_output,
            "s3://model-bucket/models",
            model_name=function_config.environment[ENV_MODEL_NAME],
            progress=False,
            s3_client=store.client,
        )
        started = time.monotonic()
        function = start_function(
            store="s3://model-bucket/models", AWS_ENDPOINT_URL_S3=store.url, MODEL_RETRY_SECONDS=0
        )
        init_s = time.monotonic() - started
        # Then init ended within Lambda's limit (the emulator holds it to 10 s), and requests that
        # load again get 503 within the bound on a load's reads
        assert function.api.init_error is None
        for event in (api_gateway_event("GET", "/health"), json_event({"image": b64(b"x")})):
            asked = time.monotonic()
            answer = function.invoke(event)
            assert answer["statusCode"] == 503, answer
            assert time.monotonic() - asked <= LOAD_READ_BOUND_S + 2
            assert body(answer)["error"]["reason"] in {"store_unreadable", "loading"}
            assert store.url not in answer["body"]
    assert init_s <= 10 + 2  # the emulator's own limit, plus starting the process
    assert "did not answer within" in function.log()
    # and the weights were what it waited for (the pointer and manifest came at once)
    assert any(request.path.endswith("/model.pt") for request in store.requests)


def test_a_store_that_never_answers_costs_a_bounded_init_and_503s_never_a_hang(
    start_function: StartFunction, silent_s3_endpoint: str
) -> None:
    # Given an S3 endpoint that accepts connections and never answers (a broken proxy)
    function = start_function(
        store="s3://model-bucket/models", AWS_ENDPOINT_URL_S3=silent_s3_endpoint, MODEL_RETRY_SECONDS=0
    )
    # Then init ended within Lambda's limit (the emulator holds it to 10 s) and requests get 503s
    assert function.api.init_error is None
    for event in (api_gateway_event("GET", "/health"), json_event({"image": b64(b"x")})):
        started = time.monotonic()
        answer = function.invoke(event)  # the emulator fails a request past the function's timeout
        assert answer["statusCode"] == 503, answer
        assert time.monotonic() - started <= STORE_CALL_BOUND_S + 1
        assert body(answer)["error"]["code"] == "model_unavailable"
        assert body(answer)["error"]["reason"] in {"store_unreadable", "loading"}
        assert silent_s3_endpoint not in answer["body"]  # no endpoint URL, bucket or key for callers


def test_the_onnxruntime_engine_serves_an_export_and_refuses_a_version_without_one(
    start_function: StartFunction, empty_store: Path, training_output: Path, function_config: FunctionConfig
) -> None:
    model_name = function_config.environment[ENV_MODEL_NAME]
    # Given a version published with model.onnx and an environment started with MODEL_ENGINE=onnxruntime
    published = publish(training_output, str(empty_store), model_name=model_name, progress=False, onnx=True)
    assert published.manifest.onnx is not None, published.onnx_skipped
    function = start_function(store=empty_store, MODEL_ENGINE="onnxruntime")
    # Then it serves it through the image's code under the runtime client
    assert health(function)["statusCode"] == 200
    image = encode(coloured_image("green", seed=7), "PNG")
    predicted = function.invoke(json_event({"image": b64(image)}))
    assert predicted["statusCode"] == 200, predicted
    assert body(predicted)["results"][0]["predictions"][0]["label"] == "green"
    assert '"engine":"onnxruntime"' in function.log().replace(" ", "")
    # When a version without ONNX becomes the latest, a new environment answers 503 saying why
    publish(training_output, str(empty_store), model_name=model_name, progress=False)
    refused = health(start_function(store=empty_store, MODEL_ENGINE="onnxruntime"))
    assert refused["statusCode"] == 503
    assert body(refused)["error"]["reason"] == "no_onnx_export"
