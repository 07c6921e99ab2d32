"""Puts the stacks of one deployment into an app, with cdk-nag's AWS Solutions checks on every synth."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.config import DeploymentConfig
from stacks.inference_stack import InferenceStack
from stacks.model_store import ModelStoreStack

PROJECT_TAG = "pytorch-lambda-inference"


@dataclass(frozen=True)
class Deployment:
    model_store: ModelStoreStack
    inference: InferenceStack


def add_nag_checks(app: App) -> None:
    """cdk-nag's AWS Solutions rules run at every synth; an unacknowledged finding fails it."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def build_deployment(app: App, config: DeploymentConfig) -> Deployment:
    """Add the model store and inference stacks to `app` (one function for app.py and the tests)."""
    add_nag_checks(app)
    model_store = ModelStoreStack(app, f"{config.stack_prefix}ModelStore", config=config)
    inference = InferenceStack(
        app, f"{config.stack_prefix}Inference", config=config, model_bucket=model_store.model_bucket
    )
    Tags.of(app).add("project", PROJECT_TAG)
    return Deployment(model_store=model_store, inference=inference)
