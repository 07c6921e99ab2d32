"""The stateful stack: the model bucket and its access-log bucket."""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk.assertions import Match

from tests.infrastructure.conftest import Synthesized

# The model bucket's logical ID. If it changes, CloudFormation replaces the bucket (and with
# it every published model): a refactor that moves the construct must keep this ID.
MODEL_BUCKET_LOGICAL_ID = "ModelStoreModelBucket1791D663"


def buckets(synth: Synthesized) -> dict[str, dict]:
    return synth.model_store.find_resources("AWS::S3::Bucket")


def test_model_bucket_logical_id_never_changes(default_synth: Synthesized) -> None:
    assert MODEL_BUCKET_LOGICAL_ID in buckets(default_synth)


def test_model_bucket_is_private_encrypted_versioned_and_access_logged(default_synth: Synthesized) -> None:
    bucket = buckets(default_synth)[MODEL_BUCKET_LOGICAL_ID]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    log_bucket_ids = [
        logical_id for logical_id in buckets(default_synth) if logical_id != MODEL_BUCKET_LOGICAL_ID
    ]
    assert bucket["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": log_bucket_ids[0]},
        "LogFilePrefix": "model-bucket/",
    }


def test_noncurrent_versions_and_abandoned_uploads_expire(default_synth: Synthesized) -> None:
    bucket = buckets(default_synth)[MODEL_BUCKET_LOGICAL_ID]["Properties"]
    assert bucket["LifecycleConfiguration"] == {
        "Rules": [
            {
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                "NoncurrentVersionExpiration": {
                    "NoncurrentDays": default_synth.config.noncurrent_version_expiration_days
                },
                "Status": "Enabled",
            }
        ]
    }


def test_both_buckets_refuse_requests_without_tls(default_synth: Synthesized) -> None:
    default_synth.model_store.resource_count_is("AWS::S3::BucketPolicy", 2)
    deny_insecure_transport = Match.object_like(
        {
            "Effect": "Deny",
            "Action": "s3:*",
            "Principal": {"AWS": "*"},
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    default_synth.model_store.all_resources_properties(
        "AWS::S3::BucketPolicy",
        {"PolicyDocument": {"Statement": Match.array_with([deny_insecure_transport])}},
    )


def test_buckets_are_retained_by_default(default_synth: Synthesized) -> None:
    for bucket in buckets(default_synth).values():
        assert bucket["DeletionPolicy"] == "Retain"
        assert bucket["UpdateReplacePolicy"] == "Retain"
    default_synth.model_store.resource_count_is("Custom::S3AutoDeleteObjects", 0)


def test_access_log_bucket_is_private_sse_s3_and_expires_logs(default_synth: Synthesized) -> None:
    (log_bucket,) = (
        bucket["Properties"]
        for logical_id, bucket in buckets(default_synth).items()
        if logical_id != MODEL_BUCKET_LOGICAL_ID
    )
    assert log_bucket["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    # S3 server access logs can only be delivered to an SSE-S3 bucket.
    assert log_bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0] == {
        "ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}
    }
    assert log_bucket["LifecycleConfiguration"]["Rules"] == [{"ExpirationInDays": 365, "Status": "Enabled"}]


def test_destroy_is_an_explicit_option_that_empties_the_buckets(
    synthesized: Callable[[str], Synthesized],
) -> None:
    synth = synthesized("arm64_dev")
    assert synth.config.bucket_removal_policy == "destroy"
    for bucket in buckets(synth).values():
        assert bucket["DeletionPolicy"] == "Delete"
    synth.model_store.resource_count_is("Custom::S3AutoDeleteObjects", 2)
    # The logical ID does not depend on the removal policy either.
    assert MODEL_BUCKET_LOGICAL_ID in buckets(synth)


def test_bucket_name_is_an_output(default_synth: Synthesized) -> None:
    default_synth.model_store.has_output("ModelBucketName", {"Value": {"Ref": MODEL_BUCKET_LOGICAL_ID}})
