"""The landing bucket (uploads arrive here) and the versioned archive bucket, each created or imported."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import constants as c
from infra.config import IngestConfig


def _private_bucket_props() -> dict[str, object]:
    # Shared by every bucket the stack creates: never public, encrypted, TLS only, owner owns every object.
    return {
        "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
        "encryption": s3.BucketEncryption.S3_MANAGED,
        "enforce_ssl": True,
        "minimum_tls_version": 1.2,
        "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    }


class Storage(Construct):
    """`landing` and `archive` (IBucket either way); `created` tells which ones this stack owns."""

    def __init__(self, scope: Construct, construct_id: str, config: IngestConfig) -> None:
        super().__init__(scope, construct_id)
        self.access_logs: s3.Bucket | None = None
        if not (config.existing_landing_bucket and config.existing_archive_bucket):
            self.access_logs = self._access_logs_bucket(config)

        self.landing: s3.IBucket
        if config.existing_landing_bucket:
            # Imported: its lifecycle, encryption and policy stay as the owner set them (docs/deploy.md).
            self.landing = s3.Bucket.from_bucket_name(self, c.LANDING_BUCKET_ID, config.existing_landing_bucket)
        else:
            self.landing = self._landing_bucket(config)

        self.archive: s3.IBucket
        if config.existing_archive_bucket:
            self.archive = s3.Bucket.from_bucket_name(self, c.ARCHIVE_BUCKET_ID, config.existing_archive_bucket)
        else:
            self.archive = self._archive_bucket(config)

    def _access_logs_bucket(self, config: IngestConfig) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            c.ACCESS_LOGS_BUCKET_ID,
            **_private_bucket_props(),  # type: ignore[arg-type]
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(id="ExpireAccessLogs", expiration=Duration.days(config.access_log_days))],
        )
        return bucket

    def _landing_bucket(self, config: IngestConfig) -> s3.Bucket:
        rules = [
            s3.LifecycleRule(
                id="AbortIncompleteMultipartUploads",
                abort_incomplete_multipart_upload_after=Duration.days(config.abort_multipart_days),
            )
        ]
        if config.rejected_expiry_days > 0:
            # Opt-in only: by default a rejected file stays (tagged) until someone looks at it.
            rules.append(
                s3.LifecycleRule(
                    id="ExpireRejectedUploads",
                    tag_filters={c.REJECTED_TAG_KEY: c.REJECTED_TAG_VALUE},
                    expiration=Duration.days(config.rejected_expiry_days),
                )
            )
        return s3.Bucket(
            self,
            c.LANDING_BUCKET_ID,
            bucket_name=config.landing_bucket_name,
            **_private_bucket_props(),  # type: ignore[arg-type]
            # Uploads are removed only by the function after a successful ingest; keep them if the stack goes.
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=rules,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="landing/",
        )

    def _archive_bucket(self, config: IngestConfig) -> s3.Bucket:
        return s3.Bucket(
            self,
            c.ARCHIVE_BUCKET_ID,
            bucket_name=config.archive_bucket_name,
            **_private_bucket_props(),  # type: ignore[arg-type]
            # The archive's version keys are S3 VersionIds: versioning is what makes a record addressable.
            versioned=True,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="TransitionToInfrequentAccess",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(config.days_to_ia),
                        )
                    ],
                    # Older versions stay referenced by the archive's version_set: they age the same way.
                    noncurrent_version_transitions=[
                        s3.NoncurrentVersionTransition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(config.days_to_ia),
                        )
                    ],
                ),
                # A multipart copy that died mid-way (function timeout) leaves parts that are billed.
                s3.LifecycleRule(
                    id="AbortIncompleteMultipartUploads",
                    abort_incomplete_multipart_upload_after=Duration.days(config.abort_multipart_days),
                ),
            ],
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="archive/",
        )
