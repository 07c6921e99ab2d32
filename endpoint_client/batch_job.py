"""`python -m endpoint_client batch`: classify every image under a prefix with the deployed stack.

Deployed (the stack was deployed with `-c batch_inference=true`):

    python -m endpoint_client batch --input s3://BUCKET/batch-input/photos/ [--output s3://.../JOB]
        [--model-version latest] [--concurrency N] [--yes] [--stack NAME] [--region REGION]

counts the images, prints a cost estimate and asks to go on; then starts the state machine
and shows progress (processed, failed) until the job ends, and where the results are. The
input is a prefix, or a manifest of keys ending in .csv (a `key` column) or .json (a list).

On this machine (the embedded default), the batch worker runs with a model store instead of a
stack: `python -m local_endpoint batch --store .model-store --model-name demo-shapes --input DIR
--output FILE.jsonl` (`make batch`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from endpoint_client.batch_cost import BenchFiguresMissing, estimate_cost, measured_speed
from endpoint_client.stack_outputs import DEFAULT_STACK, StackError, read_stack_outputs
from lambda_src.artifact import LATEST, Manifest, check_name, manifest_key
from lambda_src.contract import ModelEngine, StackOutput
from lambda_src.errors import ModelArtifactError
from lambda_src.model_store import open_store, resolve_version

POLL_SECONDS = 10.0
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
MANIFEST_SOURCES = {".csv": "csv", ".json": "json"}


class JobError(Exception):
    """The job cannot be planned or started; the message says what to change."""


@dataclass(frozen=True)
class BatchStack:
    """What the deployed stack tells a job: its state machine, locations and limits."""

    state_machine_arn: str
    input_locations: tuple[str, ...]
    output_location: str
    memory_size_mb: int
    images_per_invocation: int
    max_concurrency: int
    model_store_uri: str
    model_name: str
    engine: ModelEngine = ModelEngine.TORCH  # stacks from before the engine setting served with torch

    @classmethod
    def from_outputs(cls, stack_name: str, outputs: dict[str, str]) -> BatchStack:
        if StackOutput.BATCH_STATE_MACHINE_ARN not in outputs:
            raise JobError(
                f"stack {stack_name} has no batch state machine: deploy it with -c batch_inference=true"
            )
        return cls(
            state_machine_arn=outputs[StackOutput.BATCH_STATE_MACHINE_ARN],
            input_locations=tuple(outputs[StackOutput.BATCH_INPUT_LOCATIONS].split(",")),
            output_location=outputs[StackOutput.BATCH_OUTPUT_LOCATION],
            memory_size_mb=int(outputs[StackOutput.BATCH_MEMORY_SIZE_MB]),
            images_per_invocation=int(outputs[StackOutput.BATCH_IMAGES_PER_INVOCATION]),
            max_concurrency=int(outputs[StackOutput.BATCH_MAX_CONCURRENCY]),
            model_store_uri=outputs[StackOutput.MODEL_STORE_URI],
            model_name=outputs[StackOutput.MODEL_NAME],
            engine=ModelEngine(outputs.get(StackOutput.MODEL_ENGINE, ModelEngine.TORCH)),
        )


@dataclass(frozen=True)
class ItemSource:
    """Where a job's items come from: every key under a prefix, or a CSV/JSON manifest of keys."""

    kind: str  # "prefix", "csv" or "json" (the state machine's `source`)
    bucket: str
    path: str  # the prefix, or the manifest's key

    @classmethod
    def parse(cls, uri: str, allowed: Sequence[str]) -> ItemSource:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise JobError(f"--input {uri!r} is not s3://bucket/prefix (or a .csv/.json manifest of keys)")
        if not any(uri.startswith(location) for location in allowed):
            raise JobError(
                f"--input {uri} is outside what the batch function may read: {', '.join(allowed)} "
                "(context batch_input_bucket and batch_input_prefixes)"
            )
        path = parsed.path.lstrip("/")
        suffix = path[path.rfind(".") :].lower() if "." in path.rsplit("/", 1)[-1] else ""
        return cls(kind=MANIFEST_SOURCES.get(suffix, "prefix"), bucket=parsed.netloc, path=path)

    def count(self, s3: Any) -> int:
        """How many images the job will classify (what the Distributed Map's reader will yield)."""
        if self.kind == "prefix":
            paginator = s3.get_paginator("list_objects_v2")
            return sum(
                sum(1 for item in page.get("Contents", []) if not item["Key"].endswith("/"))
                for page in paginator.paginate(Bucket=self.bucket, Prefix=self.path)
            )
        body = s3.get_object(Bucket=self.bucket, Key=self.path)["Body"].read().decode("utf-8")
        if self.kind == "csv":
            rows = csv.DictReader(io.StringIO(body))
            if "key" not in (rows.fieldnames or []):
                raise JobError(f"s3://{self.bucket}/{self.path}: the first row must name a 'key' column")
            return sum(1 for _ in rows)
        keys = json.loads(body)
        if not isinstance(keys, list):
            raise JobError(f"s3://{self.bucket}/{self.path} must hold a JSON list of keys")
        return len(keys)

    def execution_input(self) -> dict[str, str]:
        return {"source": self.kind, ("prefix" if self.kind == "prefix" else "key"): self.path}


def job_name_for(output: str | None, output_location: str, now: datetime) -> str:
    """The execution's name: the last part of --output (under the stack's output location), or a timestamp."""
    if output is None:
        return f"batch-{now:%Y%m%d-%H%M%S}"
    if not output.startswith(output_location):
        raise JobError(
            f"--output {output} must be {output_location}<job name>: the only place jobs may write"
        )
    name = output[len(output_location) :].strip("/")
    try:
        return check_name("job name", name)
    except ValueError as error:
        raise JobError(f"--output {output}: {error}") from None


def start_job(
    stepfunctions: Any, stack: BatchStack, source: ItemSource, *, name: str, version: str, concurrency: int
) -> str:
    """Start the state machine; the execution's ARN."""
    execution_input = {**source.execution_input(), "model_version": version, "max_concurrency": concurrency}
    try:
        started = stepfunctions.start_execution(
            stateMachineArn=stack.state_machine_arn, name=name, input=json.dumps(execution_input)
        )
    except stepfunctions.exceptions.ExecutionAlreadyExists:
        raise JobError(f"a job named {name!r} exists already: give another --output") from None
    return str(started["executionArn"])


def progress_line(counts: dict[str, int] | None) -> str:
    """Processed and failed images from a map run's item counts (DescribeMapRun's itemCounts)."""
    if counts is None:
        return "listing the images..."
    failed = counts.get("failed", 0) + counts.get("timedOut", 0) + counts.get("aborted", 0)
    processed = counts.get("succeeded", 0) + failed
    return f"processed {processed:,} of {counts.get('total', 0):,} images, {failed:,} in failed batches"


def map_run_counts(stepfunctions: Any, execution_arn: str) -> dict[str, int] | None:
    runs = stepfunctions.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    if not runs:
        return None
    return dict(stepfunctions.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"])


def follow_job(
    stepfunctions: Any,
    execution_arn: str,
    *,
    out: IO[str],
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = POLL_SECONDS,
) -> dict[str, Any]:
    """Print progress whenever it changes until the execution ends; its last description."""
    shown = ""
    while True:
        execution = stepfunctions.describe_execution(executionArn=execution_arn)
        line = progress_line(map_run_counts(stepfunctions, execution_arn))
        if line != shown:
            print(f"[{execution['status'].lower()}] {line}", file=out, flush=True)
            shown = line
        if execution["status"] in TERMINAL:
            return dict(execution)
        sleep(poll_seconds)


def model_architecture(store_uri: str, model_name: str, version: str) -> str:
    store = open_store(store_uri)
    return Manifest.from_json(store.read(manifest_key(store.prefix, model_name, version))).architecture


def confirm(question: str, *, read: Callable[[str], str] = input) -> bool:
    try:
        return read(f"{question} [y/N] ").strip().lower() in {"y", "yes"}
    except EOFError:  # no terminal to answer from: not a yes
        return False


@dataclass(frozen=True)
class Clients:
    cloudformation: Any
    s3: Any
    stepfunctions: Any

    @classmethod
    def create(cls, region: str | None) -> Clients:
        import boto3

        return cls(
            cloudformation=boto3.client("cloudformation", region_name=region),
            s3=boto3.client("s3", region_name=region),
            stepfunctions=boto3.client("stepfunctions", region_name=region),
        )


def run_deployed(
    args: argparse.Namespace,
    clients: Clients,
    *,
    out: IO[str] = sys.stdout,
    read: Callable[[str], str] = input,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Plan, estimate, confirm, start and follow one job on the deployed stack."""
    stack = BatchStack.from_outputs(args.stack, read_stack_outputs(args.stack, client=clients.cloudformation))
    concurrency = args.concurrency or stack.max_concurrency
    if not 1 <= concurrency <= stack.max_concurrency:
        raise JobError(
            f"--concurrency must be from 1 to {stack.max_concurrency} (context batch_max_concurrency)"
        )
    source = ItemSource.parse(args.input, stack.input_locations)
    name = job_name_for(args.output, stack.output_location, datetime.now(UTC))
    version = resolve_version(open_store(stack.model_store_uri), stack.model_name, args.model_version)
    images = source.count(clients.s3)
    print(f"Job {name}: {args.input} with {stack.model_name} version {version}", file=out)
    if images == 0:
        print("No images to classify.", file=out)
        return 0
    architecture = model_architecture(stack.model_store_uri, stack.model_name, version)
    speed = measured_speed(architecture, engine=stack.engine)
    estimate = estimate_cost(
        images,
        memory_mb=stack.memory_size_mb,
        images_per_invocation=stack.images_per_invocation,
        concurrency=concurrency,
        speed=speed,
    )
    print("Estimated cost:", *estimate.lines(), sep="\n", file=out)
    if not args.yes and not confirm(f"Classify {images:,} images?", read=read):
        print("Not started.", file=out)
        return 1
    execution_arn = start_job(
        clients.stepfunctions, stack, source, name=name, version=version, concurrency=concurrency
    )
    print(f"Started {execution_arn}", file=out, flush=True)
    execution = follow_job(clients.stepfunctions, execution_arn, out=out, sleep=sleep)
    results = f"{stack.output_location}{name}/"
    if execution["status"] != "SUCCEEDED":
        reason = f"{execution.get('error', '')} {execution.get('cause', '')}".strip()
        print(f"Job {execution['status'].lower()}" + (f": {reason}" if reason else ""), file=out)
        print(f"Results written before it stopped are under {results}", file=out)
        return 1
    print(f"Done. Results (JSON Lines, one line per image) are under {results}", file=out)
    return 0


def add_batch_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `batch` on a command line."""
    command = subparsers.add_parser(
        "batch",
        help="classify every image under an S3 prefix with the deployed stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument(
        "--input", required=True, help="s3://bucket/prefix, a .csv/.json manifest of keys, or a folder"
    )
    command.add_argument("--output", help="s3://<BatchOutputLocation><job name> (default: a timestamp)")
    command.add_argument("--model-version", default=LATEST, help=f"a published version (default: {LATEST})")
    command.add_argument(
        "--concurrency", type=int, help="child executions at once (default: the stack's maximum)"
    )
    command.add_argument("--yes", action="store_true", help="start without asking after the cost estimate")
    command.add_argument("--stack", default=DEFAULT_STACK, help="the inference stack (default %(default)s)")
    command.add_argument("--region", help="AWS region of the stack (default: your configuration's)")
    # The first releases ran local jobs here with --store; that is `python -m local_endpoint batch` now.
    command.add_argument("--store", help=argparse.SUPPRESS)
    command.set_defaults(run=run_batch_command)


def run_batch_command(args: argparse.Namespace, *, clients: Clients | None = None) -> int:
    """The `batch` command: 0 when the job finished, 1 when it did not, 2 when it could not start."""
    try:
        if args.store:
            raise JobError(
                "a batch on this machine (--store) is `python -m local_endpoint batch --store STORE "
                "--model-name NAME --input DIR --output FILE.jsonl` (or make batch)"
            )
        return run_deployed(args, clients or Clients.create(args.region))
    except (JobError, StackError, BenchFiguresMissing, ModelArtifactError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as error:  # no region, no credentials, access denied...
        print(f"error: AWS refused or could not be reached: {error}", file=sys.stderr)
        return 2
