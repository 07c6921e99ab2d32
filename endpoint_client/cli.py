"""`python -m endpoint_client`: query a deployed (or local) endpoint and smoke-test it.

    predict     send an image, print the predictions
    smoke-test  check health, model version, a real prediction and the latency

`python -m model_training predict` and `smoke-test` remain as aliases of these
commands (the first release had them there). Every failure a person can fix ends
with one readable line on stderr and exit code 1 (2 for a wrong command line).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from endpoint_client.batch_job import add_batch_command
from endpoint_client.client import (
    DEFAULT_TIMEOUT_SECONDS,
    DEPRECATED_AUTH_SPELLINGS,
    EndpointError,
    format_predictions,
    predict,
)
from endpoint_client.smoke_test import (
    DEFAULT_PREDICT_REQUESTS,
    SmokeTarget,
    SmokeTestFailure,
    run_smoke_test,
    target_from_stack,
)
from endpoint_client.stack_outputs import DEFAULT_STACK, StackError
from lambda_src.artifact import LATEST
from lambda_src.contract import API_KEY_HEADER, DEFAULT_TOP_K, AuthMode

PROG = "python -m endpoint_client"
EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
# One of the demo set's unseen examples (a circle, model_training.demo_data.write_examples):
# any classifier accepts it, and the demo model recognises it.
SMOKE_IMAGE = Path(__file__).with_name("circle-1.jpg")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _auth_argument(text: str) -> AuthMode:
    """An --auth value; the first release's `api-key` still works, with a note on stderr."""
    if text in DEPRECATED_AUTH_SPELLINGS:
        mode = DEPRECATED_AUTH_SPELLINGS[text]
        print(f"note: --auth {text} is deprecated, use --auth {mode}", file=sys.stderr)
        return mode
    try:
        return AuthMode(text)
    except ValueError:
        choices = ", ".join(repr(mode.value) for mode in AuthMode)
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {choices})") from None


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `predict` and `smoke-test` on a command line."""
    add_predict_command(subparsers)
    add_smoke_test_command(subparsers)


def add_predict_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `predict` on a command line (this package's, and `python -m model_training`'s)."""
    command = subparsers.add_parser(
        "predict",
        help="send an image to an endpoint and print the predictions",
        description=(
            "POST an image to <URL>/predict: the raw bytes (Content-Type from the image's format) or, with "
            '--json, the JSON body {"image": "<base64>"}. Exits 1 with the server\'s message on an error.'
        ),
    )
    command.add_argument(
        "url", help="the API's base URL (the stack's EndpointUrl output) or its /predict URL"
    )
    command.add_argument("image", type=Path, help="a JPEG, PNG or WebP file")
    command.add_argument(
        "--json", action="store_true", help="send the JSON base64 format instead of raw bytes"
    )
    command.add_argument(
        "--top-k", type=positive_int, help=f"how many classes to return (server default: {DEFAULT_TOP_K})"
    )
    command.add_argument(
        "--auth",
        type=_auth_argument,
        choices=list(AuthMode),
        default=AuthMode.NONE,
        help=f"iam: sign with your AWS credentials (SigV4); api_key: send {API_KEY_HEADER}; none (default)",
    )
    command.add_argument(
        "--api-key",
        default=os.environ.get("API_KEY"),
        help="the API key for --auth api_key (default: the API_KEY environment variable, which keeps it "
        "out of your shell history)",
    )
    command.add_argument(
        "--region", help="AWS region for SigV4 (default: from the URL, else your AWS config)"
    )
    command.add_argument(
        "--content-type", help="send the raw body with this Content-Type (default: detected)"
    )
    command.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds to wait (default: %(default)s)",
    )
    command.add_argument("--raw", action="store_true", help="print the endpoint's JSON answer as is")
    command.set_defaults(run=run_predict_command)


def run_predict_command(args: argparse.Namespace) -> int:
    """The `predict` command: print the predictions, or exit 1 with the server's message."""
    try:
        response = predict(
            args.url,
            args.image,
            as_json=args.json,
            content_type=args.content_type,
            top_k=args.top_k,
            auth=args.auth,
            api_key=args.api_key,
            region=args.region,
            timeout=args.timeout,
        )
    except EndpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(response, indent=2) if args.raw else format_predictions(response))
    return EXIT_PASSED


def add_smoke_test_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `smoke-test` on a command line (this package's, and `python -m model_training`'s)."""
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
        type=_auth_argument,
        choices=list(AuthMode),
        help="with --endpoint-url: iam, api_key or none (default: none); with a stack: its AuthMode output",
    )
    command.add_argument(
        "--api-key",
        default=os.environ.get("API_KEY"),
        help="API key for api_key auth (default: API_KEY, else read from the stack's ApiKeyId)",
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
        "--image", type=Path, help="JPEG, PNG or WebP to send (default: a demo image, a circle)"
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
        image = args.image if args.image is not None else SMOKE_IMAGE
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
            auth=args.auth or AuthMode.NONE,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Query the endpoint that serves the classifier, smoke-test it after a deploy, or run "
        "a batch job.",
        epilog=f"Run `{PROG} <command> --help` for a command's options.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    add_commands(subparsers)
    add_batch_command(subparsers)  # new, so no `python -m model_training` alias
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
