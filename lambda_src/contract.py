"""Every name that crosses a boundary between the project's parts, defined once.

The stacks set these names, the runtime reads them, and the local endpoint, the
client, the smoke test, the bench and the tests import them from here. Standard
library only: the CDK app and the client import this module without torch, boto3
or Powertools.
"""

from __future__ import annotations

from enum import StrEnum

# The function's environment: set by stacks/inference_function.py (and by the local
# endpoint and the bench), read by lambda_src.
ENV_MODEL_STORE = "MODEL_STORE"  # s3://<bucket>/<prefix> or a local folder
ENV_MODEL_NAME = "MODEL_NAME"
ENV_MODEL_VERSION = "MODEL_VERSION"  # a published version, or "latest"
ENV_MAX_BATCH_SIZE = "MAX_BATCH_SIZE"
ENV_MAX_BODY_BYTES = "MAX_BODY_BYTES"
ENV_MAX_IMAGE_PIXELS = "MAX_IMAGE_PIXELS"
ENV_MODEL_RETRY_SECONDS = "MODEL_RETRY_SECONDS"
ENV_TORCH_NUM_THREADS = "TORCH_NUM_THREADS"  # the serving engine's intra-op threads, either engine
ENV_MODEL_ENGINE = "MODEL_ENGINE"  # a ModelEngine value; unset: torch
ENV_CORS_ALLOW_ORIGIN = "CORS_ALLOW_ORIGIN"  # set only when CORS is on
# Powertools' own variables (its documented names).
ENV_POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
ENV_POWERTOOLS_METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"
ENV_POWERTOOLS_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
# Lambda's own: how this execution environment was initialised ("on-demand",
# "provisioned-concurrency", or "snap-start" when init runs for a SnapStart snapshot).
ENV_LAMBDA_INITIALIZATION_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"
SNAP_START_INITIALIZATION = "snap-start"
# Read by Powertools itself (some when it is imported); the runtime checks them first.
ENV_POWERTOOLS_LOGGER_SAMPLE_RATE = "POWERTOOLS_LOGGER_SAMPLE_RATE"
ENV_POWERTOOLS_DEV = "POWERTOOLS_DEV"
ENV_POWERTOOLS_DEBUG = "POWERTOOLS_DEBUG"
ENV_POWERTOOLS_LOG_DEDUPLICATION_DISABLED = "POWERTOOLS_LOG_DEDUPLICATION_DISABLED"
ENV_POWERTOOLS_LOGGER_LOG_EVENT = "POWERTOOLS_LOGGER_LOG_EVENT"
ENV_POWERTOOLS_TRACE_DISABLED = "POWERTOOLS_TRACE_DISABLED"

# Every variable the function reads that a deployer may set (boto3's AWS_* aside: a setting
# they reject makes the store answer 503 misconfigured). Each fails soft: 503 misconfigured,
# or a fallback and a warning in the log, never an init error.
FUNCTION_VARIABLES = (
    ENV_MODEL_STORE,
    ENV_MODEL_NAME,
    ENV_MODEL_VERSION,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_BODY_BYTES,
    ENV_MAX_IMAGE_PIXELS,
    ENV_MODEL_RETRY_SECONDS,
    ENV_TORCH_NUM_THREADS,
    ENV_CORS_ALLOW_ORIGIN,
    ENV_POWERTOOLS_SERVICE_NAME,
    ENV_POWERTOOLS_METRICS_NAMESPACE,
    ENV_POWERTOOLS_METRICS_DISABLED,
    ENV_POWERTOOLS_LOG_LEVEL,
    ENV_POWERTOOLS_LOGGER_SAMPLE_RATE,
    ENV_POWERTOOLS_DEV,
    ENV_POWERTOOLS_DEBUG,
    ENV_POWERTOOLS_LOG_DEDUPLICATION_DISABLED,
    ENV_POWERTOOLS_LOGGER_LOG_EVENT,
    ENV_POWERTOOLS_TRACE_DISABLED,
)

# Set by Lambda in every execution environment: the function version it runs. The handler's
# metrics carry it as a second dimension set, so a deployment's rollback alarms can watch the
# version being deployed alone (stacks/monitoring.py).
ENV_AWS_LAMBDA_FUNCTION_VERSION = "AWS_LAMBDA_FUNCTION_VERSION"
METRIC_SERVICE_DIMENSION = "service"
METRIC_VERSION_DIMENSION = "function_version"

# The `service` of every log line and the one dimension of every metric. The deployed
# stack names its function's service; the default is what local runs and tests see.
DEPLOYED_SERVICE_NAME = "image-classifier"
DEFAULT_SERVICE_NAME = "pytorch-inference"
DEFAULT_METRICS_NAMESPACE = "PyTorchInference"


class Metric(StrEnum):
    """The handler's CloudWatch metrics (EMF); the alarms and the dashboard read them."""

    LATENCY = "Latency"  # ms, per request, inside the function
    CLIENT_ERRORS = "ClientErrors"  # count, 1 per request answered with a 4xx
    SERVER_ERRORS = "ServerErrors"  # count, 1 per request answered with a 5xx
    IMAGES_CLASSIFIED = "ImagesClassified"  # count, per successful predict
    # The phases of a successful predict, in ms: the request (body, JSON, base64) read into
    # image bytes; the bytes decoded into pixels; pixels to the input tensor; the forward pass.
    PARSE_LATENCY = "ParseLatency"
    DECODE_LATENCY = "DecodeLatency"
    PREPROCESS_LATENCY = "PreprocessLatency"
    INFERENCE_LATENCY = "InferenceLatency"
    MODEL_LOAD_DURATION = "ModelLoadDuration"  # ms, per successful load
    MODEL_LOAD_FAILURES = "ModelLoadFailures"  # count, per failed load attempt
    # SnapStart (lambda_src/snapstart.py): one line per environment restored from a snapshot.
    RESTORES = "Restores"  # count, 1 per restore
    RESTORE_DURATION = "RestoreDuration"  # ms, the after-restore hooks (REPORT has the whole restore)


# HTTP API: routes, media types and the default of `?top_k=`.
PREDICT_PATH = "/predict"
HEALTH_PATH = "/health"
JSON_MEDIA_TYPE = "application/json"
JPEG_MEDIA_TYPE = "image/jpeg"
PNG_MEDIA_TYPE = "image/png"
WEBP_MEDIA_TYPE = "image/webp"
IMAGE_MEDIA_TYPES = (JPEG_MEDIA_TYPE, PNG_MEDIA_TYPE, WEBP_MEDIA_TYPE)  # also the API's binary media types
DEFAULT_TOP_K = 5  # classes per image when the request does not say (batch jobs too)

# Platform payload limits.
LAMBDA_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # synchronous invoke request and response, base64 included
API_GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024  # REST API payload limit
DEFAULT_MAX_BATCH_SIZE = 8  # images per {"images": [...]} request
MAX_BATCH_SIZE_LIMIT = 64  # one forward pass per request: keep its memory bounded


class ModelEngine(StrEnum):
    """What runs the published model (context `engine`, `MODEL_ENGINE`, the local endpoint's `--engine`)."""

    TORCH = "torch"  # model.pt in PyTorch: every architecture the registry builds
    ONNXRUNTIME = "onnxruntime"  # the version's model.onnx in ONNX Runtime: no torch in the image


DEFAULT_MODEL_ENGINE = ModelEngine.TORCH


class AuthMode(StrEnum):
    """How callers authenticate to the deployed API (context `auth_mode`, the client's `--auth`)."""

    IAM = "iam"  # SigV4-signed with the caller's AWS credentials
    API_KEY = "api_key"  # an API key in x-api-key, with a usage plan
    NONE = "none"  # open: only by explicit choice


API_KEY_HEADER = "x-api-key"


class StackOutput(StrEnum):
    """The inference stack's CloudFormation outputs, named once for the stack and for whoever reads them."""

    ENDPOINT_URL = "EndpointUrl"  # the API's base URL: POST <url>predict, GET <url>health
    MODEL_STORE_URI = "ModelStoreUri"  # s3://<bucket>/<prefix>, where `publish` writes
    MODEL_NAME = "ModelName"
    MODEL_VERSION = "ModelVersion"
    AUTH_MODE = "AuthMode"
    MODEL_ENGINE = "ModelEngine"  # a ModelEngine value: what the functions serve with
    API_KEY_ID = "ApiKeyId"  # only with auth_mode api_key
    # For people and scripts finding the deployment's parts.
    MODEL_BUCKET_NAME = "ModelBucketName"
    MODEL_LOCATION = "ModelLocation"  # s3://<bucket>/<prefix>/<model name>/: its versions and LATEST
    FUNCTION_NAME = "FunctionName"
    DASHBOARD_NAME = "DashboardName"
    DEPLOYMENT_APPLICATION_NAME = "DeploymentApplicationName"
    DEPLOYMENT_GROUP_NAME = "DeploymentGroupName"
    ALARM_TOPIC_ARN = "AlarmTopicArn"  # only with alarm_email
    # Only with batch_inference true; the client's `batch` command reads them.
    BATCH_STATE_MACHINE_ARN = "BatchStateMachineArn"
    BATCH_INPUT_LOCATIONS = "BatchInputLocations"  # s3://bucket/prefix/ the jobs may read, comma-separated
    BATCH_OUTPUT_LOCATION = "BatchOutputLocation"  # s3://bucket/prefix/: each job writes <job name>/ there
    BATCH_MEMORY_SIZE_MB = "BatchMemorySizeMb"
    BATCH_IMAGES_PER_INVOCATION = "BatchImagesPerInvocation"
    BATCH_MAX_CONCURRENCY = "BatchMaxConcurrency"


# The outputs the inference stack emits only with batch_inference true.
BATCH_STACK_OUTPUTS = frozenset(output for output in StackOutput if output.name.startswith("BATCH_"))

# The image's entry points, as Lambda's `_HANDLER` spells them (`module.function`). The API
# function runs the Dockerfile's CMD, API_HANDLER (tests/runtime checks the Dockerfile); the
# batch function is the same image started with BATCH_HANDLER.
API_HANDLER = "lambda_src.handler.lambda_handler"
BATCH_HANDLER = "lambda_src.batch_handler.lambda_handler"


def handler_module(handler: str) -> str:
    """The module of a `module.function` entry point: what to import to run its init."""
    return handler.rpartition(".")[0]
