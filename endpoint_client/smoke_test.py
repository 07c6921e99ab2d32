"""`python -m endpoint_client smoke-test`: is the deployed endpoint serving the expected model, and how fast?

After a deploy (or against `python -m local_endpoint`), in this order, stopping at the first failure:

    1. find the endpoint: the stack's outputs (EndpointUrl, AuthMode, ModelName, ModelVersion,
       ApiKeyId, ModelStoreUri), or --endpoint-url given directly
    2. GET /health answers 200 with the expected model name and version (a stack serving
       `latest` is expected to serve the version its store's LATEST pointer names)
    3. POST /predict with a real image, a few times: 200, the same model version, ranked
       predictions; reports the latencies

Every request goes through endpoint_client.client; this module keeps the checks and the report.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from endpoint_client.client import DEFAULT_TIMEOUT_SECONDS, EndpointError, health, predict, route_url
from endpoint_client.stack_outputs import StackError, read_stack_outputs
from lambda_src.artifact import LATEST, latest_key
from lambda_src.contract import HEALTH_PATH, PREDICT_PATH, AuthMode, StackOutput

DEFAULT_PREDICT_REQUESTS = 5


class SmokeTestFailure(Exception):
    """One check failed; the message says which and what was seen."""


@dataclass(frozen=True)
class SmokeTarget:
    """What to call and what to expect from it."""

    endpoint_url: str
    auth: AuthMode = AuthMode.NONE
    api_key: str | None = None
    region: str | None = None
    expected_model: str | None = None  # None: any model name
    expected_version: str | None = None  # None: any version
    version_source: str = ""  # why that version is expected, for the report


@dataclass(frozen=True)
class SmokeReport:
    """What the smoke test saw: the served model and every latency, in milliseconds."""

    model_name: str
    model_version: str
    health_ms: float
    predict_ms: list[float]
    top_label: str
    top_score: float


def target_from_stack(
    stack_name: str,
    *,
    region: str | None = None,
    api_key: str | None = None,
    expected_version: str | None = None,
    cloudformation: Any = None,
) -> SmokeTarget:
    """Read the inference stack's outputs: where to call, how to authenticate and what to expect."""
    outputs = read_stack_outputs(stack_name, region=region, client=cloudformation)
    if StackOutput.ENDPOINT_URL not in outputs:
        found = ", ".join(sorted(outputs)) or "none"
        raise StackError(
            f"stack {stack_name} has no {StackOutput.ENDPOINT_URL} output (outputs: {found}): "
            "is it the inference stack?"
        )
    auth = _stack_auth_mode(outputs.get(StackOutput.AUTH_MODE, ""))
    if auth == AuthMode.API_KEY and not api_key:
        api_key = _api_key_value(outputs.get(StackOutput.API_KEY_ID, ""), region)
    model = outputs.get(StackOutput.MODEL_NAME)
    version, source = expected_version, "given with --expect-version"
    if version is None:
        version = outputs.get(StackOutput.MODEL_VERSION)
        source = f"the stack's {StackOutput.MODEL_VERSION} output ({stack_name})"
    if version == LATEST and model and StackOutput.MODEL_STORE_URI in outputs:
        version, source = latest_version(outputs[StackOutput.MODEL_STORE_URI], model)
    if version == LATEST:  # no store to read the pointer from: any version will do
        version, source = None, ""
    return SmokeTarget(
        endpoint_url=outputs[StackOutput.ENDPOINT_URL],
        auth=auth,
        api_key=api_key,
        region=region,
        expected_model=model,
        expected_version=version,
        version_source=source,
    )


def _stack_auth_mode(value: str) -> AuthMode:
    """The stack's AuthMode output; IAM (the stack's default) when it is missing or unknown."""
    try:
        return AuthMode(value)
    except ValueError:
        return AuthMode.IAM


def latest_version(store_uri: str, model_name: str) -> tuple[str, str]:
    """The version a store's LATEST pointer names for `model_name` (what `latest` serves), and where."""
    from lambda_src.errors import ModelArtifactError
    from lambda_src.model_store import open_store, resolve_version

    try:
        store = open_store(store_uri)
        pointer = store.describe(latest_key(store.prefix, model_name))
        return resolve_version(store, model_name, LATEST), f"what {pointer} names"
    except (ModelArtifactError, ValueError) as error:
        raise SmokeTestFailure(
            f"cannot tell which version LATEST names in {store_uri}: {error}. "
            "Give --expect-version VERSION to say what the endpoint should serve"
        ) from None


def _api_key_value(api_key_id: str, region: str | None) -> str:
    """The value of the stack's API key (needs apigateway:GET on it), unless the caller gave one."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    if not api_key_id:
        raise StackError(
            f"the stack uses an API key but has no {StackOutput.API_KEY_ID} output: give --api-key"
        )
    try:
        response = boto3.client("apigateway", region_name=region).get_api_key(
            apiKey=api_key_id, includeValue=True
        )
    except (BotoCoreError, ClientError) as error:
        raise StackError(f"cannot read the value of API key {api_key_id}: {error}. Give --api-key") from None
    return str(response["value"])


def check_health(
    target: SmokeTarget, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> tuple[dict[str, Any], float]:
    """GET /health: the served model (name, version, ...) and the request's latency in ms."""
    url = route_url(target.endpoint_url, HEALTH_PATH)
    started = time.perf_counter()
    try:
        document = health(
            target.endpoint_url,
            auth=target.auth,
            api_key=target.api_key,
            region=target.region,
            timeout=timeout,
        )
    except EndpointError as error:
        if error.status is None:  # no answer: the client's message says where it looked
            raise SmokeTestFailure(error.message) from None
        reason = f"{error.code}: {error.detail}".strip(": ")
        raise SmokeTestFailure(f"GET {url} answered {error.status}: {reason}") from None
    elapsed_ms = (time.perf_counter() - started) * 1000
    model = document.get("model") if isinstance(document, dict) else None
    if not isinstance(model, dict) or not model.get("name") or not model.get("version"):
        raise SmokeTestFailure(
            f"GET {url} answered 200 without the served model's name and version: {document}"
        )
    _check_model(model, target, f"GET {url}")
    return model, elapsed_ms


def check_predictions(
    target: SmokeTarget,
    image: Path,
    served_version: str,
    *,
    requests: int = DEFAULT_PREDICT_REQUESTS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> tuple[list[float], dict[str, Any]]:
    """POST the image `requests` times; latencies (ms) and the top prediction."""
    latencies: list[float] = []
    top: dict[str, Any] = {}
    for _ in range(requests):
        started = time.perf_counter()
        try:
            response = predict(
                target.endpoint_url,
                image,
                auth=target.auth,
                api_key=target.api_key,
                region=target.region,
                timeout=timeout,
            )
        except EndpointError as error:
            raise SmokeTestFailure(f"POST /predict with {image.name}: {error.message}") from None
        latencies.append((time.perf_counter() - started) * 1000)
        top = _check_prediction(response, target, served_version)
    return latencies, top


def run_smoke_test(
    target: SmokeTarget,
    image: Path,
    *,
    requests: int = DEFAULT_PREDICT_REQUESTS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    report: Callable[[str], None] = print,
) -> SmokeReport:
    """Health, model version, predictions; each line of progress goes to `report`."""
    report(f"smoke test of {target.endpoint_url} (auth: {target.auth})")
    model, health_ms = check_health(target, timeout=timeout)
    details = ", ".join(f"{key} {model[key]}" for key in ("architecture", "num_classes") if key in model)
    report(
        f"  health   200 in {health_ms:.0f} ms: model {model['name']} version {model['version']} ({details})"
    )
    if target.expected_version is not None:
        report(f"  version  {model['version']} as expected ({target.version_source})")
    latencies, top = check_predictions(
        target, image, str(model["version"]), requests=requests, timeout=timeout
    )
    report(f"  predict  200 x {len(latencies)}: {image.name} -> {top['label']} ({float(top['score']):.3f})")
    report(f"  latency  {describe_latencies(latencies)}")
    return SmokeReport(
        model_name=str(model["name"]),
        model_version=str(model["version"]),
        health_ms=health_ms,
        predict_ms=latencies,
        top_label=str(top["label"]),
        top_score=float(top["score"]),
    )


def describe_latencies(latencies: list[float]) -> str:
    """The first request apart (it may have met a cold start), then the rest's median and maximum."""
    first = f"first {latencies[0]:.0f} ms (may include a cold start)"
    rest = latencies[1:]
    if not rest:
        return first
    return f"{first}; then median {statistics.median(rest):.0f} ms, max {max(rest):.0f} ms over {len(rest)}"


def _check_model(model: dict[str, Any], target: SmokeTarget, where: str) -> None:
    if target.expected_model is not None and model.get("name") != target.expected_model:
        raise SmokeTestFailure(
            f"{where} serves model {model.get('name')!r}, but {target.expected_model!r} was expected"
        )
    if target.expected_version is not None and model.get("version") != target.expected_version:
        raise SmokeTestFailure(
            f"{where} serves model version {model.get('version')!r}, but {target.expected_version!r} was "
            f"expected ({target.version_source})"
        )


def _check_prediction(response: dict[str, Any], target: SmokeTarget, served_version: str) -> dict[str, Any]:
    """The top prediction of a 200 answer, after checking the model and the ranking."""
    model = response.get("model") if isinstance(response, dict) else None
    if not isinstance(model, dict):
        raise SmokeTestFailure(f"POST /predict answered without the served model: {str(response)[:300]}")
    _check_model(model, target, f"POST {PREDICT_PATH}")
    if model.get("version") != served_version:
        raise SmokeTestFailure(
            f"POST /predict was answered by model version {model.get('version')!r} while /health said "
            f"{served_version!r}: two versions are serving (a rollout in progress?)"
        )
    try:
        predictions = response["results"][0]["predictions"]
        scores = [float(prediction["score"]) for prediction in predictions]
        labels = [str(prediction["label"]) for prediction in predictions]
    except (KeyError, IndexError, TypeError, ValueError):
        raise SmokeTestFailure(
            f"POST /predict answered without ranked predictions: {str(response)[:300]}"
        ) from None
    if not labels or scores != sorted(scores, reverse=True) or not all(0 <= s <= 1 for s in scores):
        raise SmokeTestFailure(f"POST /predict answered with unranked or invalid scores: {predictions}")
    return dict(predictions[0])
