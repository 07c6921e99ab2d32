"""The stateful half: the model bucket (and the bucket its access logs go to)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import BucketRemovalPolicy, DeploymentConfig

ACCESS_LOG_EXPIRATION_DAYS = 365  # server access logs kept a year, then deleted
INCOMPLETE_UPLOAD_EXPIRATION_DAYS = 7  # abandoned multipart uploads (interrupted publishes)
ACCESS_LOG_PREFIX = "model-bucket/"


def removal_policy_of(choice: BucketRemovalPolicy) -> RemovalPolicy:
    """The context choice as CDK's RemovalPolicy (the choice's member names are CDK's)."""
    return RemovalPolicy[choice.name]


class ModelBucket(Construct):
    """An S3 bucket for model artifacts: private, TLS only, SSE-S3, versioned, access logged.

    SSE-S3 (not KMS) on purpose: the artifacts are model weights, not personal data, and with
    S3-managed keys the function's role needs no kms:Decrypt and there is no key policy to keep
    in step with the role.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy,
        noncurrent_version_expiration: Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        destroy = removal_policy == RemovalPolicy.DESTROY
        self.access_log_bucket = self._build_access_log_bucket(removal_policy, destroy)
        self.bucket = self._build_model_bucket(removal_policy, destroy, noncurrent_version_expiration)

    def _build_access_log_bucket(self, removal_policy: RemovalPolicy, destroy: bool) -> s3.Bucket:
        # cdk-nag's S1 (server access logs) accepts a bucket that is another bucket's log destination.
        return s3.Bucket(
            self,
            "AccessLogBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # S3 server access logging delivers only to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(ACCESS_LOG_EXPIRATION_DAYS))],
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
        )

    def _build_model_bucket(
        self, removal_policy: RemovalPolicy, destroy: bool, noncurrent_version_expiration: Duration
    ) -> s3.Bucket:
        return s3.Bucket(
            self,
            "ModelBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=noncurrent_version_expiration,
                    abort_incomplete_multipart_upload_after=Duration.days(INCOMPLETE_UPLOAD_EXPIRATION_DAYS),
                )
            ],
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix=ACCESS_LOG_PREFIX,
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
        )


class ModelStoreStack(Stack):
    """Stateful: the model bucket. Retained on stack deletion unless bucket_removal_policy=destroy."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Model store: versioned, private S3 bucket for PyTorch model artifacts",
        )
        removal_policy = removal_policy_of(config.bucket_removal_policy)
        model_store = ModelBucket(
            self,
            "ModelStore",
            removal_policy=removal_policy,
            noncurrent_version_expiration=Duration.days(config.noncurrent_version_expiration_days),
        )
        self.model_bucket = model_store.bucket
        if removal_policy == RemovalPolicy.DESTROY:
            self._drop_redundant_provider_dependency()
        CfnOutput(self, "ModelBucketName", value=self.model_bucket.bucket_name)
        CfnOutput(self, "AccessLogBucketName", value=model_store.access_log_bucket.bucket_name)

    def _drop_redundant_provider_dependency(self) -> None:
        """CDK's auto-delete-objects provider (only with bucket_removal_policy=destroy).

        Its handler gets the role by GetAtt; the DependsOn CDK adds as well is redundant (cfn-lint W3005).
        """
        provider = self.node.find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
        handler = provider.node.find_child("Handler")
        handler.remove_resource_dependency(provider.node.find_child("Role"))  # type: ignore[attr-defined]
