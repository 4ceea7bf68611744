"""The scheduled audit (`audit_schedule` context): `lambda_ingest.audit.handler` on an EventBridge schedule.

It reconciles the landing bucket, the archive bucket and the archive API and publishes its counts as
metrics (`AuditInconsistencies`, namespace LambdaIngest); Monitoring alarms when that is above 0. The
scheduled run only reads (`--fix` is a command-line decision), so its role has no write or delete action.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra import constants as c
from infra.config import LAMBDA_MAX_TIMEOUT_S, IngestConfig
from infra.constructs.ingest_function import RUNTIME, objects_finding
from infra.nag import suppress

LANDING_OBJECT_ACTIONS = ("s3:GetObject", "s3:GetObjectTagging")  # age, md5 metadata, rejection tags
LANDING_BUCKET_ACTIONS = ("s3:ListBucket",)
ARCHIVE_OBJECT_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")  # HEAD a version's md5 metadata
ARCHIVE_BUCKET_ACTIONS = ("s3:ListBucket", "s3:ListBucketVersions")
# Variables the audit does not use (the ingest path's idempotency table and event bus).
NOT_FOR_AUDIT = (c.ENV_IDEMPOTENCY_TABLE, c.ENV_EVENT_BUS_NAME)


class Audit(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        config: IngestConfig,
        *,
        code: lambda_.Code,
        environment: Mapping[str, str],
        landing: s3.IBucket,
        archive: s3.IBucket,
        secret: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, construct_id)
        assert config.audit_schedule is not None
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="lambda_ingest audit: list and HEAD landing/archive objects, read the token",
        )
        log_group = logs.LogGroup(self, "LogGroup", removal_policy=RemovalPolicy.DESTROY)
        cfn_log_group = log_group.node.default_child
        assert isinstance(cfn_log_group, logs.CfnLogGroup)
        cfn_log_group.retention_in_days = config.log_retention_days
        log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "Function",
            description="lambda_ingest audit: landing bucket vs archive bucket vs archive API",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=c.AUDIT_HANDLER,
            code=code,
            memory_size=config.memory_mb,
            # Paged and streaming: a large bucket takes minutes.
            timeout=Duration.seconds(LAMBDA_MAX_TIMEOUT_S),
            role=self.role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={k: v for k, v in environment.items() if k not in NOT_FOR_AUDIT},
        )
        suppress(
            self.function,
            "L1",
            f"python{c.LAMBDA_PYTHON_VERSION}, the same runtime and bundle as the ingest function (docs/deploy.md).",
        )
        for resources, actions in (
            ([landing.arn_for_objects("*")], LANDING_OBJECT_ACTIONS),
            ([landing.bucket_arn], LANDING_BUCKET_ACTIONS),
            ([archive.arn_for_objects("*")], ARCHIVE_OBJECT_ACTIONS),
            ([archive.bucket_arn], ARCHIVE_BUCKET_ACTIONS),
        ):
            iam.Grant.add_to_principal(grantee=self.role, actions=list(actions), resource_arns=resources)
        secret.grant_read(self.role)
        suppress(
            self.role,
            "IAM5",
            "The audit lists and reads every object of both buckets (keys are chosen by uploaders and by "
            "ocs_archive); X-Ray trace upload supports no resource-level permissions.",
            applies_to=[objects_finding(landing), objects_finding(archive), "Resource::*"],
            children=True,
        )

        self.rule = events.Rule(
            self,
            "Schedule",
            description="lambda_ingest: scheduled audit",
            schedule=events.Schedule.expression(config.audit_schedule),
            targets=[targets.LambdaFunction(self.function, retry_attempts=2)],
        )
