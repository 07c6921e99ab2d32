"""`python -m endpoint_client batch` against moto: stack outputs, counting, cost, confirmation, start, follow.

moto's Step Functions stores state machines and executions (start, describe, stop) but runs no
definition: an execution stays RUNNING until stopped, and it has no map runs. So these tests
exercise the command's planning, its start request and its polling until an end against moto;
what a real Distributed Map reports while it runs (DescribeMapRun's item counts) is checked on
the documented response shape, and the run itself is covered by the synth and worker tests.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from endpoint_client.batch_job import (
    BatchStack,
    Clients,
    ItemSource,
    JobError,
    follow_job,
    job_name_for,
    progress_line,
    run_batch_command,
    run_deployed,
)
from endpoint_client.cli import build_parser, main
from lambda_src.contract import StackOutput
from tests.support.tiny_model import publish

REGION = "eu-west-1"
STACK = "ImageClassifierInference"
MODEL_BUCKET = "models-bucket"
INPUT_BUCKET = "team-images"
OUTPUT_LOCATION = f"s3://{MODEL_BUCKET}/batch-results/"
WEIGHTS = b"weights are never read by the command"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clients]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield Clients(
            cloudformation=boto3.client("cloudformation", region_name=REGION),
            s3=boto3.client("s3", region_name=REGION),
            stepfunctions=boto3.client("stepfunctions", region_name=REGION),
        )


@pytest.fixture
def deployed(aws: Clients) -> dict[str, str]:
    """What a deploy with batch_inference=true leaves: buckets, a published model, the stack's outputs."""
    for bucket in (MODEL_BUCKET, INPUT_BUCKET):
        aws.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    publish(
        lambda key, data: aws.s3.put_object(Bucket=MODEL_BUCKET, Key=key, Body=data),
        prefix="models",
        model_name="colours",
        version="v3",
        weights=WEIGHTS,
    )
    for index in range(45):
        aws.s3.put_object(Bucket=INPUT_BUCKET, Key=f"photos/{index:03d}.jpg", Body=b"jpeg")
    aws.s3.put_object(Bucket=INPUT_BUCKET, Key="photos/", Body=b"")  # a console "folder"
    aws.s3.put_object(
        Bucket=INPUT_BUCKET, Key="scans/list.csv", Body=b"key\nphotos/000.jpg\nphotos/001.jpg\n"
    )
    aws.s3.put_object(Bucket=INPUT_BUCKET, Key="scans/list.json", Body=b'["photos/000.jpg"]')
    aws.s3.put_object(Bucket=INPUT_BUCKET, Key="scans/bad.csv", Body=b"path\nphotos/000.jpg\n")
    state_machine = aws.stepfunctions.create_state_machine(
        name="BatchStateMachine",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/batch",
    )["stateMachineArn"]
    outputs = {
        StackOutput.MODEL_STORE_URI: f"s3://{MODEL_BUCKET}/models",
        StackOutput.MODEL_NAME: "colours",
        StackOutput.BATCH_STATE_MACHINE_ARN: state_machine,
        StackOutput.BATCH_INPUT_LOCATIONS: f"s3://{INPUT_BUCKET}/photos/,s3://{INPUT_BUCKET}/scans/",
        StackOutput.BATCH_OUTPUT_LOCATION: OUTPUT_LOCATION,
        StackOutput.BATCH_MEMORY_SIZE_MB: "3008",
        StackOutput.BATCH_IMAGES_PER_INVOCATION: "16",
        StackOutput.BATCH_MAX_CONCURRENCY: "40",
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "stack-marker"}}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    aws.cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    return outputs


def run(clients: Clients, *argv: str, answer: str = "y", stop_after_polls: int = 1) -> tuple[int, str]:
    """The command as a user runs it; the job is stopped after some polls (moto never ends it)."""
    out = io.StringIO()
    polls = [0]

    def sleep(_: float) -> None:
        polls[0] += 1
        if polls[0] == stop_after_polls:
            [execution] = clients.stepfunctions.list_executions(stateMachineArn=state_machine_arn(clients))[
                "executions"
            ]
            clients.stepfunctions.stop_execution(
                executionArn=execution["executionArn"], cause="stopped by test"
            )

    args = build_parser().parse_args(["batch", *argv])
    code = run_deployed(args, clients, out=out, read=lambda _: answer, sleep=sleep)
    return code, out.getvalue()


def state_machine_arn(clients: Clients) -> str:
    [machine] = clients.stepfunctions.list_state_machines()["stateMachines"]
    return str(machine["stateMachineArn"])


def executions(clients: Clients) -> list[dict[str, Any]]:
    listed = clients.stepfunctions.list_executions(stateMachineArn=state_machine_arn(clients))["executions"]
    return [clients.stepfunctions.describe_execution(executionArn=e["executionArn"]) for e in listed]


def test_a_job_counts_estimates_starts_with_the_resolved_version_and_follows_to_the_end(
    aws: Clients, deployed: dict[str, str]
) -> None:
    code, out = run(
        aws,
        "--input",
        f"s3://{INPUT_BUCKET}/photos/",
        "--output",
        f"{OUTPUT_LOCATION}june-photos",
        "--concurrency",
        "8",
    )

    [execution] = executions(aws)
    assert execution["name"] == "june-photos"
    assert json.loads(execution["input"]) == {
        "source": "prefix",
        "prefix": "photos/",
        "model_version": "v3",  # "latest" resolved before the start: one version for the whole job
        "max_concurrency": 8,
    }
    assert "45 images in 3 batches, up to 3 function environments" in out  # the folder marker is no image
    assert "at 3008 MB" in out and "Total:" in out
    assert "listing the images..." in out
    assert execution["status"] == "ABORTED" and code == 1
    assert f"{OUTPUT_LOCATION}june-photos/" in out


def test_answering_no_starts_nothing(aws: Clients, deployed: dict[str, str]) -> None:
    code, out = run(aws, "--input", f"s3://{INPUT_BUCKET}/photos/", answer="n")

    assert code == 1 and "Not started." in out
    assert executions(aws) == []


def test_manifests_are_counted_by_their_keys_and_name_their_source(
    aws: Clients, deployed: dict[str, str]
) -> None:
    allowed = (f"s3://{INPUT_BUCKET}/scans/",)
    csv = ItemSource.parse(f"s3://{INPUT_BUCKET}/scans/list.csv", allowed)
    listed = ItemSource.parse(f"s3://{INPUT_BUCKET}/scans/list.json", allowed)

    assert (csv.kind, csv.count(aws.s3)) == ("csv", 2)
    assert (listed.kind, listed.count(aws.s3)) == ("json", 1)
    assert csv.execution_input() == {"source": "csv", "key": "scans/list.csv"}
    with pytest.raises(JobError, match="'key' column"):
        ItemSource.parse(f"s3://{INPUT_BUCKET}/scans/bad.csv", allowed).count(aws.s3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", f"s3://{INPUT_BUCKET}/private/"], "outside what the batch function may read"),
        (["--input", "photos/"], "is not s3://bucket/prefix"),
        (["--input", f"s3://{INPUT_BUCKET}/photos/", "--concurrency", "41"], "from 1 to 40"),
        (["--input", f"s3://{INPUT_BUCKET}/photos/", "--output", "s3://elsewhere/x"], "must be s3://"),
        (["--input", f"s3://{INPUT_BUCKET}/photos/", "--model-version", "v9"], "v9"),
    ],
)
def test_a_job_that_cannot_run_is_refused_before_anything_starts(
    aws: Clients, deployed: dict[str, str], argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_batch_command(build_parser().parse_args(["batch", *argv, "--yes"]), clients=aws)

    assert code == 2
    assert message in capsys.readouterr().err
    assert executions(aws) == []


def test_a_stack_without_batch_inference_says_how_to_deploy_it() -> None:
    with pytest.raises(JobError, match="-c batch_inference=true"):
        BatchStack.from_outputs(
            STACK, {StackOutput.MODEL_STORE_URI: "s3://b/models", StackOutput.MODEL_NAME: "m"}
        )


def test_a_second_job_with_the_same_name_is_refused(aws: Clients, deployed: dict[str, str]) -> None:
    argv = ["--input", f"s3://{INPUT_BUCKET}/photos/", "--output", f"{OUTPUT_LOCATION}again", "--yes"]
    assert run(aws, *argv)[0] == 1  # started, then stopped

    assert run_batch_command(build_parser().parse_args(["batch", *argv]), clients=aws) == 2
    assert len(executions(aws)) == 1


def test_job_names_come_from_the_output_or_the_clock() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 30, 23, 5, 9, tzinfo=UTC)
    assert job_name_for(None, OUTPUT_LOCATION, now) == "batch-20261130-230509"
    assert job_name_for(f"{OUTPUT_LOCATION}cats/", OUTPUT_LOCATION, now) == "cats"
    with pytest.raises(JobError):
        job_name_for(f"{OUTPUT_LOCATION}a/b", OUTPUT_LOCATION, now)


def test_progress_reads_a_map_runs_item_counts() -> None:
    # DescribeMapRun's itemCounts, as documented in the Step Functions API reference.
    counts = {
        "pending": 10,
        "running": 32,
        "succeeded": 900,
        "failed": 16,
        "timedOut": 0,
        "aborted": 0,
        "total": 1000,
        "resultsWritten": 900,
    }

    assert progress_line(counts) == "processed 916 of 1,000 images, 16 in failed batches"
    assert progress_line(None) == "listing the images..."


class EndingStepFunctions:
    """What moto cannot do: a Distributed Map's run that progresses and then succeeds."""

    def __init__(self, counts: list[dict[str, int]]) -> None:
        self.counts = counts
        self.polls = 0

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        self.polls += 1
        return {"status": "SUCCEEDED" if self.polls >= len(self.counts) else "RUNNING"}

    def list_map_runs(self, executionArn: str) -> dict[str, Any]:
        return {"mapRuns": [{"mapRunArn": "arn:aws:states:eu-west-1:123456789012:mapRun:x/y:z"}]}

    def describe_map_run(self, mapRunArn: str) -> dict[str, Any]:
        return {"itemCounts": self.counts[self.polls - 1]}


def test_following_prints_each_change_of_progress_until_the_end() -> None:
    steps = [
        {"succeeded": 0, "failed": 0, "total": 64},
        {"succeeded": 32, "failed": 0, "total": 64},
        {"succeeded": 32, "failed": 0, "total": 64},
        {"succeeded": 48, "failed": 16, "total": 64},
    ]
    out = io.StringIO()

    execution = follow_job(EndingStepFunctions(steps), "arn", out=out, sleep=lambda _: None)

    assert execution["status"] == "SUCCEEDED"
    assert out.getvalue().splitlines() == [
        "[running] processed 0 of 64 images, 0 in failed batches",
        "[running] processed 32 of 64 images, 0 in failed batches",
        "[succeeded] processed 64 of 64 images, 16 in failed batches",
    ]


def test_a_job_on_this_machine_points_to_the_local_endpoints_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["batch", "--store", ".model-store", "--input", "images", "--output", "results.jsonl"]

    assert main(argv) == 2
    assert "python -m local_endpoint batch" in capsys.readouterr().err


def test_without_a_region_the_command_says_so_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))

    assert main(["batch", "--input", "s3://team-images/photos/", "--yes"]) == 2
    assert "region" in capsys.readouterr().err
