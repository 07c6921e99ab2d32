"""Start-up steps shared by `python -m local_endpoint` and the demo: bind, load the handler, report."""

from __future__ import annotations

import argparse
import errno
import importlib
import ipaddress
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from lambda_src.model_store import ENV_NAME, ENV_STORE, ENV_VERSION, ModelLocation
from local_endpoint.lambda_context import FunctionSettings
from local_endpoint.server import LambdaHandler, LocalEndpoint

if TYPE_CHECKING:  # importing it loads torch: only the handler module should, when it is time
    from lambda_src.service import InferenceService

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
HANDLER_MODULE = "lambda_src.handler"
ENV_METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"


def location_from_args(args: argparse.Namespace) -> ModelLocation:
    """The model to serve; a local folder becomes an absolute path so the logs say where it is."""
    store = args.store
    if not urlparse(store).scheme:
        store = str(Path(store).expanduser().resolve())
    return ModelLocation(store_uri=store, model_name=args.model_name, version=args.version)


def _not_loaded(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("the handler is not loaded yet")


def bind(host: str, port: int, handler: LambdaHandler = _not_loaded) -> LocalEndpoint:
    """Listen on host:port now (so a busy port fails fast, before the slow model load)."""
    if not _is_loopback(host):
        print(
            f"warning: listening on {host}: the local endpoint has no authentication; "
            "anyone who can reach this address can use it",
            file=sys.stderr,
        )
    try:
        return LocalEndpoint((host, port), handler, function=FunctionSettings())
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ValueError(
                f"port {port} on {host} is in use: pick another with --port (make: PORT=...)"
            ) from None
        raise ValueError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def load_function(location: ModelLocation) -> ModuleType:
    """Import the Lambda handler module with the model environment the deployed function gets.

    The module loads the model at import, exactly as in a Lambda cold start; its
    `lambda_handler` is what the server invokes and its `service` says what it serves.
    """
    # CloudWatch turns the function's metric lines into metrics; locally they would only be noise.
    os.environ.setdefault(ENV_METRICS_DISABLED, "true")
    os.environ[ENV_STORE] = location.store_uri
    os.environ[ENV_NAME] = location.model_name
    os.environ[ENV_VERSION] = location.version
    return importlib.import_module(HANDLER_MODULE)


def describe_model(service: InferenceService) -> str:
    """One line saying what is served, or that nothing is yet."""
    model = service.model
    if model is None:
        return (
            "Model unavailable: the 'model load failed' log line above says why. The endpoint answers "
            "503 until a load succeeds (it retries on requests, like the function)."
        )
    manifest = model.manifest
    return (
        f"Model ready: {manifest.model_name} version {manifest.version} "
        f"({manifest.architecture}, {manifest.num_classes} classes: {', '.join(manifest.labels)})"
    )
