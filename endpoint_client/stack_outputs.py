"""Find the deployed model store (and endpoint) from the inference stack's CloudFormation outputs.

The CDK app (stacks/inference_stack.py) emits the outputs under the names
lambda_src.contract.StackOutput gives them; `publish --publish-to stack:NAME` reads
ModelStoreUri here, and the smoke test reads the rest.
"""

from __future__ import annotations

from typing import Any

from lambda_src.contract import StackOutput

DEFAULT_STACK = "ImageClassifierInference"  # cdk.json stack_prefix "ImageClassifier" + "Inference"
STACK_SCHEME = "stack:"  # a store argument "stack:NAME" means "the store of deployed stack NAME"


class StackError(Exception):
    """The stack or its outputs cannot be read."""


def read_stack_outputs(stack_name: str, *, region: str | None = None, client: Any = None) -> dict[str, str]:
    """OutputKey -> OutputValue of a deployed CloudFormation stack."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        if client is None:
            import boto3

            client = boto3.client("cloudformation", region_name=region)
        stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
    except NoCredentialsError:
        raise StackError(
            f"cannot read stack {stack_name}: no AWS credentials found. Configure them (aws configure, "
            "AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or give --store"
        ) from None
    except NoRegionError:
        raise StackError(
            f"cannot read stack {stack_name}: no AWS region set (give --region or AWS_REGION)"
        ) from None
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        raise StackError(
            f"cannot read stack {stack_name}: {message}. Deploy it first (make deploy), "
            "or give --store s3://bucket/prefix"
        ) from None
    except BotoCoreError as error:
        raise StackError(f"cannot read stack {stack_name}: {error}") from None
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def store_from_stack(stack_name: str, *, region: str | None = None, client: Any = None) -> str:
    """The s3:// store URI the deployed stack serves its model from."""
    outputs = read_stack_outputs(stack_name, region=region, client=client)
    if StackOutput.MODEL_STORE_URI not in outputs:
        found = ", ".join(sorted(outputs)) or "none"
        raise StackError(
            f"stack {stack_name} has no {StackOutput.MODEL_STORE_URI} output (outputs: {found}): "
            "is it the inference stack? Give --store s3://bucket/prefix instead"
        )
    return outputs[StackOutput.MODEL_STORE_URI]


def resolve_store(store: str | None, *, region: str | None = None, client: Any = None) -> str:
    """A store argument as a URI: `stack:NAME` (or nothing: the default stack) is looked up."""
    if store is None:
        return store_from_stack(DEFAULT_STACK, region=region, client=client)
    if store.startswith(STACK_SCHEME):
        return store_from_stack(store[len(STACK_SCHEME) :] or DEFAULT_STACK, region=region, client=client)
    return store
