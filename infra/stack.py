"""The stack: composes the constructs, names the outputs, and excuses CDK's own helper for cdk-nag."""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, CfnOutput, Stack, Tags
from constructs import Construct

from infra import constants as c
from infra.config import IngestConfig
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
        self.ingest = IngestFunction(
            self,
            c.FUNCTION_CONSTRUCT_ID,
            config,
            landing=self.storage.landing,
            archive=self.storage.archive,
            queue=self.queueing.queue,
        )
        self.monitoring = Monitoring(
            self,
            c.MONITORING_ID,
            config,
            function=self.ingest.function,
            queue=self.queueing.queue,
            dead_letter_queue=self.queueing.dead_letter_queue,
        )
        self._excuse_notification_handler()

        outputs = {
            c.OUTPUT_LANDING_BUCKET: self.storage.landing.bucket_name,
            c.OUTPUT_ARCHIVE_BUCKET: self.storage.archive.bucket_name,
            c.OUTPUT_INGEST_QUEUE_URL: self.queueing.queue.queue_url,
            c.OUTPUT_DLQ_URL: self.queueing.dead_letter_queue.queue_url,
            c.OUTPUT_TOKEN_SECRET_ARN: self.ingest.secret.secret_arn,
            c.OUTPUT_FUNCTION_NAME: self.ingest.function.function_name,
            c.OUTPUT_ALARM_TOPIC_ARN: self.monitoring.topic.topic_arn,
            c.OUTPUT_DASHBOARD_NAME: self.monitoring.dashboard.dashboard_name,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)

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
