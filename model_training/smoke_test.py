"""`python -m model_training smoke-test`: is the deployed endpoint serving the expected model, and how fast?

After a deploy (or against `python -m local_endpoint`), in this order, stopping at the first failure:

    1. find the endpoint: the stack's outputs (EndpointUrl, AuthMode, ModelName, ModelVersion,
       ApiKeyId, ModelStoreUri), or --endpoint-url given directly
    2. GET /health answers 200 with the expected model name and version (a stack serving
       `latest` is expected to serve the version its store's LATEST pointer names)
    3. POST /predict with a real image through the project's client, a few times: 200, the
       same model version, ranked predictions; reports the latencies

Exit code 0 when everything holds, 1 with one line saying what failed otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lambda_src.artifact import LATEST
from model_training.client import (
    AUTH_MODES,
    DEFAULT_TIMEOUT_SECONDS,
    SIGV4_SERVICE,
    USER_AGENT,
    EndpointError,
    predict,
    region_from_url,
)
from model_training.stack_outputs import DEFAULT_STACK, StackError, read_stack_outputs

EXIT_PASSED = 0
EXIT_FAILED = 1
DEFAULT_PREDICT_REQUESTS = 5
# The stack's AuthMode output -> the client's auth mode.
STACK_AUTH_MODES = {"iam": "iam", "api_key": "api-key", "none": "none"}


class SmokeTestFailure(Exception):
    """One check failed; the message says which and what was seen."""


@dataclass(frozen=True)
class SmokeTarget:
    """What to call and what to expect from it."""

    endpoint_url: str
    auth: str = "none"  # the client's auth mode: none, iam, api-key
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
    if "EndpointUrl" not in outputs:
        found = ", ".join(sorted(outputs)) or "none"
        raise StackError(
            f"stack {stack_name} has no EndpointUrl output (outputs: {found}): is it the inference stack?"
        )
    auth = STACK_AUTH_MODES.get(outputs.get("AuthMode", "iam"), "iam")
    if auth == "api-key" and not api_key:
        api_key = _api_key_value(outputs.get("ApiKeyId", ""), region)
    model = outputs.get("ModelName")
    version, source = expected_version, "given with --expect-version"
    if version is None:
        version, source = outputs.get("ModelVersion"), f"the stack's ModelVersion output ({stack_name})"
    if version == LATEST and model and "ModelStoreUri" in outputs:
        store = outputs["ModelStoreUri"]
        version, source = latest_version(store, model), f"what {store}/{model}/LATEST names"
    if version == LATEST:  # no store to read the pointer from: any version will do
        version, source = None, ""
    return SmokeTarget(
        endpoint_url=outputs["EndpointUrl"],
        auth=auth,
        api_key=api_key,
        region=region,
        expected_model=model,
        expected_version=version,
        version_source=source,
    )


def latest_version(store_uri: str, model_name: str) -> str:
    """The version a store's LATEST pointer names for `model_name` (what `latest` serves)."""
    from lambda_src.errors import ModelArtifactError
    from lambda_src.model_store import open_store, resolve_version

    try:
        return resolve_version(open_store(store_uri), model_name, LATEST)
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
        raise StackError("the stack uses an API key but has no ApiKeyId output: give --api-key")
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
    url = _route_url(target.endpoint_url, "health")
    started = time.perf_counter()
    status, document = _get_json(url, target, timeout)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if status != 200:
        raise SmokeTestFailure(f"GET {url} answered {status}: {_error_message(document)}")
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
    """POST the image `requests` times with the project's client; latencies (ms) and the top prediction."""
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


def _route_url(endpoint: str, route: str) -> str:
    parts = urlsplit(endpoint)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SmokeTestFailure(f"{endpoint!r} is not an http(s) URL")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + route, "", ""))


def _get_json(url: str, target: SmokeTarget, timeout: float) -> tuple[int, Any]:
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if target.auth == "api-key":
        if not target.api_key:
            raise SmokeTestFailure("auth api-key needs a key: give --api-key or set API_KEY")
        headers["x-api-key"] = target.api_key
    elif target.auth == "iam":
        headers = _sigv4_get_headers(url, headers, target.region)
    request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise SmokeTestFailure(f"cannot reach {url}: {getattr(error, 'reason', error)}") from None
    try:
        return status, json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SmokeTestFailure(
            f"GET {url} answered {status} with something that is not JSON: {raw[:200]!r}"
        ) from None


def _sigv4_get_headers(url: str, headers: dict[str, str], region: str | None) -> dict[str, str]:
    """`headers` plus SigV4 headers for a GET of `url`, as the client signs its POSTs."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = boto3.Session()
    region = region or region_from_url(url) or session.region_name
    credentials = session.get_credentials()
    if not region or credentials is None:
        raise SmokeTestFailure(
            "auth iam needs AWS credentials and a region (from the URL, --region or AWS_REGION)"
        )
    request = AWSRequest(method="GET", url=url, headers=dict(headers))
    SigV4Auth(credentials.get_frozen_credentials(), SIGV4_SERVICE, region).add_auth(request)
    return dict(request.headers.items())


def _error_message(document: Any) -> str:
    """The API's `{"error": {"code", "message"}}`, API Gateway's `{"message"}`, or the body itself."""
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):
            return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
        if "message" in document:
            return str(document["message"])
    return json.dumps(document)[:300]


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
    _check_model(model, target, "POST /predict")
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


def add_smoke_test_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `smoke-test` on the `python -m model_training` command line."""
    command = subparsers.add_parser(
        "smoke-test",
        help="check a deployed endpoint: health, model version, a real prediction, latency",
        description=(
            "Check an endpoint after a deploy: GET /health must answer 200 with the expected model and "
            "version, then a real image is sent to POST /predict with this project's client (several times) "
            "and the latencies are reported. Reads the endpoint, auth mode and expected model from the "
            "stack's outputs, or takes --endpoint-url (e.g. a local endpoint). Exits 1 with the reason on "
            "any failure."
        ),
    )
    where = command.add_mutually_exclusive_group()
    where.add_argument(
        "--stack",
        default=None,
        help=f"the deployed inference stack to read outputs from (default: {DEFAULT_STACK})",
    )
    where.add_argument(
        "--endpoint-url", help="call this base URL instead of reading a stack (e.g. a local endpoint)"
    )
    command.add_argument(
        "--region", help="AWS region of the stack and for SigV4 (default: your AWS configuration)"
    )
    command.add_argument(
        "--auth",
        choices=AUTH_MODES,
        help="with --endpoint-url: iam, api-key or none (default: none); with a stack: its AuthMode output",
    )
    command.add_argument(
        "--api-key",
        default=os.environ.get("API_KEY"),
        help="API key for api-key auth (default: API_KEY, else read from the stack's ApiKeyId)",
    )
    command.add_argument(
        "--expect-model", help="model name /health must report (default: the stack's ModelName)"
    )
    command.add_argument(
        "--expect-version",
        help="model version the endpoint must serve (default: the stack's ModelVersion; for 'latest', the "
        "version LATEST names in its ModelStoreUri)",
    )
    command.add_argument(
        "--image", type=Path, help="JPEG, PNG or WebP to send (default: a generated demo image)"
    )
    command.add_argument(
        "--requests",
        type=int,
        default=DEFAULT_PREDICT_REQUESTS,
        help="predictions to send, for the latency report (default: %(default)s)",
    )
    command.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds per request (default: %(default)s)",
    )
    command.set_defaults(run=run_smoke_test_command)


def run_smoke_test_command(args: argparse.Namespace) -> int:
    """The `smoke-test` command: exit 0 when every check passed, 1 with the reason otherwise."""
    try:
        if args.requests < 1:
            raise SmokeTestFailure(f"--requests must be at least 1, got {args.requests}")
        target = _target_from_args(args)
        with tempfile.TemporaryDirectory(prefix="smoke-test-") as folder:
            image = args.image if args.image is not None else _demo_image(Path(folder))
            run_smoke_test(target, image, requests=args.requests, timeout=args.timeout)
    except StackError as error:
        print(f"smoke test FAILED: {error}", file=sys.stderr)
        print(
            "(smoke-test: give --endpoint-url URL to check an endpoint without reading a stack)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except (SmokeTestFailure, EndpointError) as error:
        print(f"smoke test FAILED: {error}", file=sys.stderr)
        return EXIT_FAILED
    print("smoke test passed")
    return EXIT_PASSED


def _target_from_args(args: argparse.Namespace) -> SmokeTarget:
    if args.endpoint_url:
        if args.expect_version == LATEST:
            raise SmokeTestFailure(
                f"--expect-version {LATEST} needs a model store to read the pointer from: "
                "give the version name"
            )
        return SmokeTarget(
            endpoint_url=args.endpoint_url,
            auth=args.auth or "none",
            api_key=args.api_key,
            region=args.region,
            expected_model=args.expect_model,
            expected_version=args.expect_version,
            version_source="given with --expect-version",
        )
    target = target_from_stack(
        args.stack or DEFAULT_STACK,
        region=args.region,
        api_key=args.api_key,
        expected_version=args.expect_version,
    )
    overrides: dict[str, Any] = {}
    if args.auth:
        overrides["auth"] = args.auth
    if args.expect_model:
        overrides["expected_model"] = args.expect_model
    return dataclasses.replace(target, **overrides)


def _demo_image(folder: Path) -> Path:
    """A generated demo image (a circle): any classifier accepts it, the demo model should recognise it."""
    from model_training.demo_data import write_examples

    return write_examples(folder, per_class=1, image_format="jpeg")[0]
