"""Synthesize the CDK app as app.py does (the session-wide `synthesized` fixture is in tests/conftest.py).

Each synth runs the real app code with cdk.json's context (CDK's feature flags; every setting
not given takes its declared default) and the cdk-nag checks, so a fixture that returns at all
has already passed cdk-nag.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from stacks.config import DeploymentConfig, parse_context
from stacks.deployment import build_deployment

REPO_ROOT = Path(__file__).resolve().parents[2]

# The configurations the tests synthesize besides the defaults: every auth mode, both
# architectures, and each optional feature switched on at least once.
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "api_key": {"auth_mode": "api_key", "api_key_quota_per_day": "5000"},
    "open_with_cors": {"auth_mode": "none", "cors_allow_origin": "https://app.example.com"},
    "arm64_dev": {
        "architecture": "arm64",
        "bucket_removal_policy": "destroy",
        "reserved_concurrency": "10",
        "provisioned_concurrency": "2",
        "snap_start": "false",  # Lambda takes provisioned concurrency or SnapStart, not both
        "model_version": "2024-06-01",
        "api_gateway_cloudwatch_role": "false",
        "execution_log_level": "info",
    },
    "operations": {
        "alarm_email": "ops@example.com",
        "provisioned_concurrency": "2",
        "provisioned_concurrency_max": "8",
        "snap_start": "false",
        "deployment_preference": "linear_10percent_every_1minute",
        "alarm_5xx_rate_percent": "2.5",
        "alarm_p99_latency_ms": "3000",
        "alarm_function_errors": "3",
        "alarm_throttles": "10",
        "alarm_model_load_failures": "2",
    },
    # Batch inference on, reading another bucket's two prefixes and writing to the model bucket.
    "batch": {
        "engine": "onnxruntime",  # both functions of the image: the onnxruntime engine's build
        "batch_inference": "true",
        "batch_memory_size_mb": "4096",
        "batch_timeout_seconds": "90",
        "batch_images_per_invocation": "16",
        "batch_max_concurrency": "40",
        "batch_tolerated_failure_percent": "3",
        "batch_input_bucket": "team-images",
        "batch_input_prefixes": "photos/,scans/2026/",
        "batch_output_prefix": "classified",
    },
    # Batch inference between two external SSE-KMS buckets, with its own concurrency share.
    "batch_external_kms": {
        "batch_inference": "true",
        "batch_reserved_concurrency": "80",
        "batch_max_concurrency": "80",
        "reserved_concurrency": "300",
        "account_concurrency_limit": "500",
        "batch_input_bucket": "team-images",
        "batch_input_prefixes": "photos/",
        "batch_input_kms_key_arn": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd",
        "batch_output_bucket": "team-results",
        "batch_output_kms_key_arn": "arn:aws:kms:eu-west-1:111122223333:key/5678efab-12ab-34cd",
    },
}


@dataclass(frozen=True)
class Synthesized:
    """One synthesized deployment: its config, templates (as assertions and as JSON) and output dir."""

    config: DeploymentConfig
    model_store: Template
    inference: Template
    model_store_json: dict[str, Any]
    inference_json: dict[str, Any]
    assembly_dir: Path
    inference_stack_name: str


def load_cdk_json_context() -> dict[str, Any]:
    return dict(json.loads((REPO_ROOT / "cdk.json").read_text())["context"])


def synthesize(overrides: Mapping[str, object], outdir: Path) -> Synthesized:
    """Build and synthesize the app exactly as app.py does, with `overrides` on top of cdk.json."""
    context = {**load_cdk_json_context(), **overrides}
    config = parse_context(context)
    app = App(context=context, outdir=str(outdir))
    deployment = build_deployment(app, config)
    assembly = app.synth()
    store = assembly.get_stack_by_name(deployment.model_store.stack_name).template
    inference = assembly.get_stack_by_name(deployment.inference.stack_name).template
    return Synthesized(
        config=config,
        model_store=Template.from_json(store),
        inference=Template.from_json(inference),
        model_store_json=store,
        inference_json=inference,
        assembly_dir=outdir,
        inference_stack_name=deployment.inference.stack_name,
    )


@pytest.fixture(scope="session")
def cdk_context() -> dict[str, Any]:
    return load_cdk_json_context()
