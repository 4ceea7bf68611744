"""The stack: composes the constructs, names the outputs, and excuses CDK's own helper for cdk-nag."""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, CfnOutput, Stack, Tags
from constructs import Construct

from infra import constants as c
from infra.config import IngestConfig
from infra.constructs.audit import Audit
from infra.constructs.batch_operations import BatchOperationsRole
from infra.constructs.events import OutcomeEvents
from infra.constructs.ingest_function import IngestFunction
from infra.constructs.monitoring import Monitoring
from infra.constructs.queueing import Queueing
from infra.constructs.storage import Storage
from infra.nag import suppress


class IngestStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, config: IngestConfig, **kwargs: Any) -> None:
        super().__init__(
            scope, construct_id, description="lambda_ingest: serverless OCS Science Archive ingester", **kwargs
        )
        Tags.of(self).add(*c.PROJECT_TAG)
        if config.placeholder_api_root:
            Annotations.of(self).add_warning_v2(
                "lambda_ingest:api-root",
                f"api_root is the placeholder {config.api_root}: deploy with -c api_root=https://<archive>/",
            )

        self.storage = Storage(self, c.STORAGE_ID, config)
        self.queueing = Queueing(self, c.QUEUEING_ID, config, self.storage.landing)
        self.events = OutcomeEvents(self, c.EVENTS_ID, config)
        self.ingest = IngestFunction(
            self,
            c.FUNCTION_CONSTRUCT_ID,
            config,
            landing=self.storage.landing,
            archive=self.storage.archive,
            queue=self.queueing.queue,
            event_bus=self.events.bus,
        )
        self.audit: Audit | None = None
        if config.audit_schedule:
            self.audit = Audit(
                self,
                c.AUDIT_ID,
                config,
                code=self.ingest.code,
                environment=self.ingest.environment,
                landing=self.storage.landing,
                archive=self.storage.archive,
                secret=self.ingest.secret,
            )
        self.ingest.restrict_secret_to(self.ingest.role, *([self.audit.role] if self.audit else []))
        self.batch_operations = BatchOperationsRole(
            self, c.BATCH_OPERATIONS_ROLE_ID, config, alias=self.ingest.alias, landing=self.storage.landing
        )
        self.monitoring = Monitoring(
            self,
            c.MONITORING_ID,
            config,
            function=self.ingest.function,
            queue=self.queueing.queue,
            dead_letter_queue=self.queueing.dead_letter_queue,
            audit_function=self.audit.function if self.audit else None,
            publishes_events=self.events.bus is not None,
        )
        self._excuse_notification_handler()
        self._warn_if_batch_prefix_notifies(config)

        outputs = {
            c.OUTPUT_LANDING_BUCKET: self.storage.landing.bucket_name,
            c.OUTPUT_ARCHIVE_BUCKET: self.storage.archive.bucket_name,
            c.OUTPUT_INGEST_QUEUE_URL: self.queueing.queue.queue_url,
            c.OUTPUT_DLQ_URL: self.queueing.dead_letter_queue.queue_url,
            c.OUTPUT_TOKEN_SECRET_ARN: self.ingest.secret.secret_arn,
            c.OUTPUT_FUNCTION_NAME: self.ingest.function.function_name,
            c.OUTPUT_ALARM_TOPIC_ARN: self.monitoring.topic.topic_arn,
            c.OUTPUT_DASHBOARD_NAME: self.monitoring.dashboard.dashboard_name,
            c.OUTPUT_FUNCTION_ALIAS_ARN: self.ingest.alias.function_arn,
            c.OUTPUT_BATCH_OPERATIONS_ROLE_ARN: self.batch_operations.role.role_arn,
        }
        if self.events.bus is not None:
            outputs[c.OUTPUT_EVENT_BUS_NAME] = self.events.bus.event_bus_name
        if self.events.archived_queue is not None:
            outputs[c.OUTPUT_ARCHIVED_FRAMES_QUEUE_URL] = self.events.archived_queue.queue_url
        if self.audit is not None:
            outputs[c.OUTPUT_AUDIT_FUNCTION_NAME] = self.audit.function.function_name
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)

    def _warn_if_batch_prefix_notifies(self, config: IngestConfig) -> None:
        # Batch Operations reports are written into the landing bucket: if their keys notify the queue, the
        # function would reject each report as "not a FITS file".
        suffixes = config.landing_suffixes
        notifies = config.batch_operations_prefix.startswith(config.landing_prefix) and (
            not suffixes or any(name.endswith(s) for s in suffixes for name in ("report.csv", "manifest.json"))
        )
        if notifies:
            Annotations.of(self).add_warning_v2(
                "lambda_ingest:batch-operations-prefix",
                f"landing keys under {config.batch_operations_prefix!r} (S3 Batch Operations manifests and reports) "
                "notify the ingest queue: set landing_prefix or landing_suffixes (docs/deploy.md)",
            )

    def _excuse_notification_handler(self) -> None:
        # CDK's singleton that writes the bucket notification configuration: its role and runtime are
        # CDK's, not ours, and its policy is already scoped to the landing bucket's ARN.
        for child in self.node.children:
            if child.node.id.startswith("BucketNotificationsHandler"):
                suppress(
                    child,
                    "IAM4",
                    "CDK's bucket-notification helper uses AWSLambdaBasicExecutionRole for its own logs.",
                    applies_to=[
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
                    ],
                    children=True,
                )
