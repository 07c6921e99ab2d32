"""How `python -m local_endpoint` and the demo start: options, bind, load the handler, report, serve."""

from __future__ import annotations

import argparse
import errno
import importlib
import io
import ipaddress
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lambda_src.artifact import LATEST
from lambda_src.contract import (
    API_HANDLER,
    ENV_MODEL_ENGINE,
    ENV_MODEL_NAME,
    ENV_MODEL_STORE,
    ENV_MODEL_VERSION,
    ENV_POWERTOOLS_METRICS_DISABLED,
    ModelEngine,
    handler_module,
)
from lambda_src.model_store import ModelLocation, parse_store_uri
from local_endpoint.lambda_context import FunctionSettings
from local_endpoint.server import LambdaHandler, LocalEndpoint, serve_until_stopped

if TYPE_CHECKING:  # importing it loads torch: only the handler module should, when it is time
    from lambda_src.service import InferenceService

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
HANDLER_MODULE = handler_module(API_HANDLER)


def location_from_args(args: argparse.Namespace) -> ModelLocation:
    """The model to serve; a local folder becomes an absolute path so the logs say where it is."""
    store = args.store
    parsed = parse_store_uri(store)
    if parsed.bucket is None:
        store = str(Path(parsed.path).expanduser().resolve())
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


def load_function(location: ModelLocation, engine: ModelEngine = ModelEngine.TORCH) -> ModuleType:
    """Import the Lambda handler module with the model environment the deployed function gets.

    The module loads the model at import, exactly as in a Lambda cold start; its
    `lambda_handler` is what the server invokes and its `service` says what it serves.
    """
    loaded = sys.modules.get(HANDLER_MODULE)
    if loaded is not None:
        # The module made its service at import: importing it again would silently serve the first model.
        service = getattr(loaded, "service", None)
        served = getattr(service, "location", None)
        served_engine = getattr(getattr(service, "settings", None), "engine", None)
        if served != location or served_engine != engine:
            raise ValueError(
                f"this process already serves {_describe(served)} with {served_engine}; it cannot also "
                f"serve {_describe(location)} with {engine} (the handler loads one model per process, "
                "like a Lambda execution environment): start another process for it"
            )
        return loaded
    # CloudWatch turns the function's metric lines into metrics; locally they would only be noise.
    os.environ.setdefault(ENV_POWERTOOLS_METRICS_DISABLED, "true")
    os.environ[ENV_MODEL_STORE] = location.store_uri
    os.environ[ENV_MODEL_NAME] = location.model_name
    os.environ[ENV_MODEL_VERSION] = location.version
    os.environ[ENV_MODEL_ENGINE] = engine.value
    return importlib.import_module(HANDLER_MODULE)


def _describe(location: ModelLocation | None) -> str:
    if location is None:
        return "a misconfigured model location"
    return f"{location.model_name} ({location.version}) from {location.store_uri}"


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
        f"({manifest.architecture}, {manifest.num_classes} classes: {', '.join(manifest.labels)}), "
        f"engine {service.settings.engine}"
    )


def add_serving_options(
    cli: argparse.ArgumentParser, *, store_default: str | None = None, model_name_default: str | None = None
) -> None:
    """--store, --model-name, --version, --engine, --host and --port."""
    cli.add_argument(
        "--store",
        required=store_default is None,
        default=store_default,
        help="model store: a folder, or s3://bucket/prefix (AWS_ENDPOINT_URL_S3 picks any S3 endpoint)"
        + (" (default: %(default)s)" if store_default else ""),
    )
    cli.add_argument(
        "--model-name",
        required=model_name_default is None,
        default=model_name_default,
        help="name of the model in the store" + (" (default: %(default)s)" if model_name_default else ""),
    )
    cli.add_argument(
        "--version",
        default=LATEST,
        help=f"version to serve, or {LATEST!r} for the newest (default: %(default)s)",
    )
    cli.add_argument(
        "--engine",
        type=ModelEngine,
        choices=list(ModelEngine),
        default=ModelEngine.TORCH,
        help="what runs the model, as the function's MODEL_ENGINE: torch (model.pt) or onnxruntime "
        "(the version's model.onnx) (default: %(default)s)",
    )
    cli.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on (default: %(default)s, this machine only)",
    )
    cli.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )


def _stop_during_startup(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(
    location: ModelLocation,
    host: str,
    port: int,
    *,
    prepare: Callable[[], None] | None = None,
    ready: Callable[[LocalEndpoint], str] | None = None,
    engine: ModelEngine = ModelEngine.TORCH,
) -> int:
    """Listen, run `prepare`, load the handler, print what is served, serve until Ctrl-C or SIGTERM.

    Returns the exit code: 0 when stopped by a signal, 2 for a setting that cannot work.
    """
    # Loading torch and the model takes seconds: let SIGTERM stop that as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _stop_during_startup)
    # Progress and the handler's logs should show up as they happen, also through a pipe.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        server = bind(host, port)  # a busy port fails now, not after the slow start-up
        with server:
            if prepare is not None:
                prepare()
            print(
                f"Loading {location.model_name} ({location.version}) from {location.store_uri} "
                f"with {engine} ..."
            )
            function = load_function(location, engine)
            server.lambda_handler = function.lambda_handler
            print(describe_model(function.service))
            if ready is not None:
                print(ready(server))
            print(f"Serving on {server.url} (Ctrl-C to stop)")
            serve_until_stopped(server)
        print("Stopped.")
        return 0
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Stopped before serving.")
        return 0
