"""Where batch jobs read and write, for the batch function, the state machine and the stack outputs."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_s3 as s3


@dataclass(frozen=True)
class BatchLocations:
    """The input prefixes jobs may read (images and manifests) and the prefix they write results under."""

    input_bucket: s3.IBucket
    input_prefixes: tuple[str, ...]
    output_bucket: s3.IBucket
    output_prefix: str

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
