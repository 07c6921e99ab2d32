"""The command-line flow `python -m local_endpoint` and the demo share: bind, load, report, serve."""

from __future__ import annotations

import argparse
import io
import signal
import sys
from collections.abc import Callable
from typing import Any

from lambda_src.artifact import LATEST
from lambda_src.model_store import ModelLocation
from local_endpoint.server import LocalEndpoint, serve_until_stopped
from local_endpoint.service import DEFAULT_HOST, DEFAULT_PORT, bind, describe_model, load_function


def add_serving_options(
    cli: argparse.ArgumentParser, *, store_default: str | None = None, model_name_default: str | None = None
) -> None:
    """--store, --model-name, --version, --host and --port."""
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
            print(f"Loading {location.model_name} ({location.version}) from {location.store_uri} ...")
            function = load_function(location)
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
