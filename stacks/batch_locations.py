"""Where batch jobs read and write, for the batch function, the state machine and the stack outputs."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3


@dataclass(frozen=True)
class BatchLocations:
    """The input prefixes jobs may read (images and manifests) and the prefix they write results under.

    `input_key_arn` / `output_key_arn`: the customer managed KMS key each bucket is encrypted
    with (SSE-KMS), or None.
    """

    input_bucket: s3.IBucket
    input_prefixes: tuple[str, ...]
    output_bucket: s3.IBucket
    output_prefix: str
    input_key_arn: str | None = None
    output_key_arn: str | None = None

    def key_statements(self, *, read_inputs: bool, write_outputs: bool) -> list[iam.PolicyStatement]:
        """Exactly the KMS actions S3 needs for a role's reads and writes, on those keys, through S3 only.

        Reading an SSE-KMS object needs kms:Decrypt; writing one kms:GenerateDataKey, and the
        result writer's multipart uploads kms:Decrypt as well.
        """
        region = Stack.of(self.input_bucket).region
        via_s3 = {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}
        statements = []
        if read_inputs and self.input_key_arn:
            statements.append(
                iam.PolicyStatement(
                    sid="DecryptInputs",
                    actions=["kms:Decrypt"],
                    resources=[self.input_key_arn],
                    conditions=via_s3,
                )
            )
        if write_outputs and self.output_key_arn:
            statements.append(
                iam.PolicyStatement(
                    sid="EncryptResults",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[self.output_key_arn],
                    conditions=via_s3,
                )
            )
        return statements

    def input_objects(self) -> list[str]:
        """ARNs of every object under the input prefixes."""
        return [self.input_bucket.arn_for_objects(f"{prefix}*") for prefix in self.input_prefixes]

    def output_objects(self) -> str:
        """ARN of every object under the output prefix."""
        return self.output_bucket.arn_for_objects(f"{self.output_prefix}/*")

    def input_uris(self) -> list[str]:
        return [f"s3://{self.input_bucket.bucket_name}/{prefix}" for prefix in self.input_prefixes]

    def output_uri(self) -> str:
        return f"s3://{self.output_bucket.bucket_name}/{self.output_prefix}/"
