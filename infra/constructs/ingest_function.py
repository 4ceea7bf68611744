"""The ingest function, its SQS event source, the archive-token secret and the idempotency table.

Permissions are exactly what `lambda_ingest.store` and the handler call, on named resources:

- landing objects: read (HEAD/ranged GET/copy source, by version too), write tags (the reason a file was
  rejected), delete (after a successful ingest); ListBucket on the landing bucket only so a vanished
  object answers 404, not 403. No tag reads: the copy replaces tags (TaggingDirective=REPLACE), so the
  landing object's tags are never read and never reach the archive.
- archive objects: PutObject (CopyObject and the multipart-copy calls; no tags are written there),
  AbortMultipartUpload, DeleteObjectVersion and, for the orphan sweep, ListBucketVersions and a HEAD of a
  version (GetObjectVersion).
- the secret: read (grant_read); the table: get/put/update/delete items (grant); the queue: consume (the
  event source's own grant); the event bus: PutEvents.

SnapStart (python3.12+, arm64 included) applies to published versions only: the function publishes a
version per change and the queue's event source mapping invokes the `live` alias pointing at it.
"""

from __future__ import annotations

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants as c
from infra.bundling import lambda_code
from infra.config import IngestConfig
from infra.nag import suppress

LANDING_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
)
LANDING_BUCKET_ACTIONS = ("s3:ListBucket",)
ARCHIVE_OBJECT_ACTIONS = (
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:DeleteObjectVersion",
    # The orphan sweep: after a crash between copy and POST, the next delivery lists the key's versions and
    # reads each unregistered version's md5 metadata (HEAD) before deleting it.
    "s3:GetObjectVersion",
)
ARCHIVE_BUCKET_ACTIONS = ("s3:ListBucketVersions",)
# What Powertools' DynamoDBPersistenceLayer calls (grant_read_write_data would add Scan, Query, Batch*).
TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
# SnapStart supports the managed python3.12+ runtimes on both architectures (AWS Lambda developer guide,
# "Improving startup performance with Lambda SnapStart").
RUNTIME = lambda_.Runtime("python" + c.LAMBDA_PYTHON_VERSION, lambda_.RuntimeFamily.PYTHON, supports_snap_start=True)


class IngestFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        config: IngestConfig,
        *,
        landing: s3.IBucket,
        archive: s3.IBucket,
        queue: sqs.IQueue,
        event_bus: events.IEventBus | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = self._idempotency_table()
        # An explicit role: no AWSLambdaBasicExecutionRole (logs:* on every log group), only what follows.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="lambda_ingest: landing read/tag/delete, archive put/delete-version, token, table",
        )
        self.log_group = logs.LogGroup(self, "LogGroup", removal_policy=RemovalPolicy.DESTROY)
        # RetentionDays is an enum of names in Python; the L1 property takes the number of days directly.
        cfn_log_group = self.log_group.node.default_child
        assert isinstance(cfn_log_group, logs.CfnLogGroup)
        cfn_log_group.retention_in_days = config.log_retention_days
        self.log_group.grant_write(self.role)

        self.secret = self._token_secret(config)
        # One asset for every function of the stack (the audit runs from the same bundle).
        self.code = lambda_code(config.bundling, pin_versions=config.bundle_pin_versions)
        self.environment = config.function_environment(
            archive_bucket=archive.bucket_name,
            secret_arn=self.secret.secret_arn,
            table_name=self.table.table_name,
            landing_bucket=landing.bucket_name,
            event_bus_name=event_bus.event_bus_name if event_bus else None,
        )
        self.function = lambda_.Function(
            self,
            c.FUNCTION_ID,
            description="lambda_ingest: landing bucket -> archive bucket + Science Archive API",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=c.HANDLER,
            code=self.code,
            memory_size=config.memory_mb,
            timeout=Duration.seconds(config.function_timeout_seconds),
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment=self.environment,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if config.snapstart else None,
            # A replaced version is deleted: SnapStart bills the cache of every active version.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
        )
        # The queue (and S3 Batch Operations) invoke the alias, so every invocation runs a published
        # version: the only kind SnapStart restores from a snapshot.
        self.alias = lambda_.Alias(
            self, "Alias", alias_name=c.FUNCTION_ALIAS_NAME, version=self.function.current_version
        )
        Annotations.of(self.function).acknowledge_warning(
            "@aws-cdk/aws-lambda:snapStartRequirePublish", "current_version publishes; the alias is what runs"
        )
        suppress(
            self.function,
            "L1",
            f"python{c.LAMBDA_PYTHON_VERSION} on purpose: the newest CPython on the project's machines, so the "
            "bundle is import-tested on the same minor version; CPython 3.13 is maintained upstream until 2029.",
        )
        # X-Ray has no resource-level permissions: PutTraceSegments/PutTelemetryRecords are always on "*".
        suppress(
            self.role,
            "IAM5",
            "X-Ray trace upload (added by tracing=ACTIVE) supports no resource-level permissions.",
            applies_to=["Resource::*"],
            children=True,
        )

        self._grant_storage(landing, archive)
        self.secret.grant_read(self.role)
        self.table.grant(self.role, *TABLE_ACTIONS)
        if event_bus is not None:
            event_bus.grant_put_events_to(self.role)

        self.alias.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=config.batch_size,
                max_batching_window=Duration.seconds(config.batching_window_seconds)
                if config.batching_window_seconds
                else None,
                # Powertools' BatchProcessor returns the failed records only; the others are deleted.
                report_batch_item_failures=True,
                # Caps parallel POSTs to the archive API, whatever the queue depth.
                max_concurrency=config.max_concurrency,
            )
        )

    def _idempotency_table(self) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            c.IDEMPOTENCY_TABLE_ID,
            partition_key=dynamodb.Attribute(name=c.IDEMPOTENCY_KEY_ATTR, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=c.IDEMPOTENCY_TTL_ATTR,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            # Short-lived de-duplication records only; the archive itself is the record of what was ingested.
            removal_policy=RemovalPolicy.DESTROY,
        )
        suppress(
            table,
            "DDB3",
            "Idempotency records expire within hours and are re-creatable; point-in-time recovery protects nothing.",
        )
        return table

    def _token_secret(self, config: IngestConfig) -> secretsmanager.ISecret:
        if config.token_secret_arn:
            return secretsmanager.Secret.from_secret_complete_arn(self, c.TOKEN_SECRET_ID, config.token_secret_arn)
        # Created with a random placeholder (never a value in the template); the operator then stores the
        # archive's token with `put-secret-value` (docs/deploy.md).
        secret = secretsmanager.Secret(
            self,
            c.TOKEN_SECRET_ID,
            description="lambda_ingest: Science Archive API token (set with put-secret-value)",
            removal_policy=RemovalPolicy.RETAIN,
        )
        suppress(
            secret,
            "SMG4",
            "The token is issued by the Science Archive; it is rotated there and stored here by the operator.",
        )
        return secret

    def restrict_secret_to(self, *readers: iam.IRole) -> None:
        """Deny GetSecretValue to every principal but `readers` (the stack's functions); call once."""
        # IAM grants only add readers; this resource policy removes every other one (administrators can
        # still write a new value, or delete the policy on purpose). Only possible on a secret we own.
        if isinstance(self.secret, secretsmanager.Secret):
            arns = [r.role_arn for r in readers]
            self.secret.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="OnlyTheStackFunctionsRead",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["secretsmanager:GetSecretValue"],
                    resources=["*"],  # in a secret's resource policy "*" means this secret
                    conditions={"StringNotEquals": {"aws:PrincipalArn": arns[0] if len(arns) == 1 else arns}},
                )
            )

    def _grant_storage(self, landing: s3.IBucket, archive: s3.IBucket) -> None:
        # Explicit actions instead of grant_read/grant_delete/grant_put: those add List*, GetBucket*,
        # DeleteObject* and PutObjectRetention/LegalHold, none of which the function calls.
        for actions, arn in (
            (LANDING_OBJECT_ACTIONS, landing.arn_for_objects("*")),
            (LANDING_BUCKET_ACTIONS, landing.bucket_arn),
            (ARCHIVE_OBJECT_ACTIONS, archive.arn_for_objects("*")),
            (ARCHIVE_BUCKET_ACTIONS, archive.bucket_arn),
        ):
            iam.Grant.add_to_principal(grantee=self.role, actions=list(actions), resource_arns=[arn])
        suppress(
            self.role,
            "IAM5",
            "Object keys are chosen by uploaders (landing) and by ocs_archive's canonical paths (archive): "
            "object permissions must cover <bucket>/*; the bucket itself is named.",
            applies_to=[objects_finding(landing), objects_finding(archive)],
            children=True,
        )


def objects_finding(bucket: s3.IBucket) -> str:
    """How cdk-nag spells `<bucket>/*` in an IAM5 finding: by logical id if created here, else by name."""
    cfn = bucket.node.default_child
    if isinstance(cfn, s3.CfnBucket):
        return f"Resource::<{Stack.of(bucket).get_logical_id(cfn)}.Arn>/*"
    return f"Resource::arn:<AWS::Partition>:s3:::{bucket.bucket_name}/*"
