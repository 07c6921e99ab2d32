"""Whole-app checks: cfn-lint on every template, cdk-nag wired into synth, the real app.py and cdk CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aws_cdk import App
from aws_cdk import aws_s3 as s3
from cfnlint.api import ManualArgs, lint

from stacks.config import parse_context
from stacks.deployment import build_deployment
from tests.infrastructure.conftest import REPO_ROOT, VARIANTS, Synthesized, load_cdk_json_context

# Keep the CLI offline: no telemetry, no notices, no version check, no instance metadata lookups.
OFFLINE_ENV = {
    "CDK_DISABLE_CLI_TELEMETRY": "true",
    "CDK_DISABLE_VERSION_CHECK": "true",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cfn_lint_finds_no_errors_or_warnings(
    synthesized: Callable[[str], Synthesized], variant: str
) -> None:
    synth = synthesized(variant)
    for template in (synth.model_store_json, synth.inference_json):
        matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
        assert [str(match) for match in matches] == []


def test_cfn_lint_reports_warnings_so_the_check_above_can_fail() -> None:
    # A Lambda function with a redundant DependsOn on its role: cfn-lint warns (W3005).
    template = {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "lambda.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    }
                },
            },
            "Function": {
                "Type": "AWS::Lambda::Function",
                "DependsOn": ["Role"],
                "Properties": {
                    "PackageType": "Image",
                    "Code": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:tag"},
                    "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                },
            },
        }
    }
    matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))
    assert [match.rule.id for match in matches] == ["W3005"]


def test_cdk_nag_runs_in_every_synth_of_the_deployment(tmp_path: Path) -> None:
    # Given the real deployment, plus a bucket that breaks AWS Solutions rules (no access logs, no TLS rule)
    context = load_cdk_json_context()
    app = App(context=context, outdir=str(tmp_path))
    deployment = build_deployment(app, parse_context(context))
    s3.Bucket(deployment.model_store, "UnloggedBucket")
    # When it is synthesized, then cdk-nag stops the synth and names the findings
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    (plugin,) = report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions"
    rules = {violation["ruleName"] for violation in plugin["violations"]}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules
    paths = {
        construct["constructPath"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    }
    assert paths == {f"{deployment.model_store.stack_name}/UnloggedBucket/Resource"}


def run_app(tmp_path: Path, **overrides: object) -> subprocess.CompletedProcess[str]:
    """Run app.py the way the cdk CLI does: context in CDK_CONTEXT_JSON, output in CDK_OUTDIR."""
    context = {**load_cdk_json_context(), **overrides}
    env = {**os.environ, **OFFLINE_ENV, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "app.py"],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_app_stops_on_a_bad_context_value_with_a_readable_message(tmp_path: Path) -> None:
    result = run_app(tmp_path, memory_size_mb="64", auth_mode="open", memory_mb="1")
    assert result.returncode == 1
    assert "Invalid deployment settings (cdk.json context or -c key=value):" in result.stderr
    assert (
        "context key 'memory_size_mb' has invalid value '64': allowed is a whole number from 1024"
        in result.stderr
    )
    assert (
        "context key 'auth_mode' has invalid value 'open': allowed is one of iam, api_key, none"
        in result.stderr
    )
    assert "unknown context key 'memory_mb': did you mean 'memory_size_mb'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json"))


@pytest.mark.slow
def test_the_cdk_cli_synthesizes_the_app_from_the_repo(tmp_path: Path) -> None:
    # Given the pinned cdk CLI (npm ci) and the repo as checked out
    npx = shutil.which("npx")
    assert npx is not None, "Node.js (npx) is needed for the cdk CLI: run `make setup`"
    assert (REPO_ROOT / "node_modules" / ".bin" / "cdk").exists(), (
        "run `make setup` to install the pinned cdk CLI"
    )
    outdir = tmp_path / "cdk.out"
    # When `cdk synth` runs as a user would run it
    result = subprocess.run(
        [npx, "--no-install", "cdk", "synth", "--quiet", "--no-notices", "-o", str(outdir)],
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, **OFFLINE_ENV},
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Then it succeeds (cdk-nag findings or a bad context would fail it) and writes both templates
    assert result.returncode == 0, result.stderr[-4000:]
    defaults = parse_context(load_cdk_json_context())
    for stack in ("ModelStore", "Inference"):
        template = json.loads((outdir / f"{defaults.stack_prefix}{stack}.template.json").read_text())
        assert template["Resources"]
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert {f"{defaults.stack_prefix}ModelStore", f"{defaults.stack_prefix}Inference"} <= set(
        manifest["artifacts"]
    )
