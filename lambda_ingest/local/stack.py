"""The embedded local stack: S3/SQS/DynamoDB (moto's server, 32-char version ids) + the archive emulator.

Everything binds to 127.0.0.1. The landing bucket notifies a local SQS queue exactly as the deployed
stack's bucket does, so the demo and tests feed the handler the messages S3 really produced.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from lambda_ingest.local.archive_emulator import ArchiveEmulator
from lambda_ingest.local.s3 import LocalS3Server

REGION = "us-east-1"
LANDING_BUCKET = "lambda-ingest-landing"
ARCHIVE_BUCKET = "lambda-ingest-archive"
QUEUE_NAME = "lambda-ingest-queue"
DLQ_NAME = "lambda-ingest-dlq"
IDEMPOTENCY_TABLE = "lambda-ingest-idempotency"
EVENT_BUS = "lambda-ingest-events"
EVENTS_QUEUE_NAME = "lambda-ingest-events-subscriber"  # stands in for a downstream consumer (a pipeline)


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str = REGION) -> dict[str, Any]:
    """The SQS event Lambda's event source mapping builds from received messages (ReceiveMessage shape)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class LocalStack:
    def __init__(self) -> None:
        self.s3_server = LocalS3Server()
        # A fresh random token per run: nothing secret is baked into the code.
        self.token = secrets.token_hex(20)
        self.archive: ArchiveEmulator | None = None
        self.queue_url = ""
        self.dlq_url = ""
        self.queue_arn = ""
        self.events_queue_url = ""
        self._saved_env: dict[str, str | None] | None = None

    def client(self, service: str) -> Any:
        from lambda_ingest.clients import new_session

        return new_session().client(
            service,
            region_name=REGION,
            endpoint_url=self.s3_server.endpoint_url,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def start(self) -> LocalStack:
        self.s3_server.start()
        # moto's backends are per process: a stack started after another (tests, a second demo) begins empty.
        self.s3_server.reset()
        s3 = self.client("s3")
        s3.create_bucket(Bucket=LANDING_BUCKET)
        s3.create_bucket(Bucket=ARCHIVE_BUCKET)
        s3.put_bucket_versioning(Bucket=ARCHIVE_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sqs = self.client("sqs")
        self.dlq_url = sqs.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
        self.queue_url = sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        s3.put_bucket_notification_configuration(
            Bucket=LANDING_BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": self.queue_arn, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        # Outcome events: a bus whose rule sends everything lambda_ingest publishes to a subscriber queue.
        self.events_queue_url = sqs.create_queue(QueueName=EVENTS_QUEUE_NAME)["QueueUrl"]
        events_queue_arn = sqs.get_queue_attributes(QueueUrl=self.events_queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        eventbridge = self.client("events")
        eventbridge.create_event_bus(Name=EVENT_BUS)
        eventbridge.put_rule(Name="all-outcomes", EventBusName=EVENT_BUS, EventPattern='{"source": ["lambda_ingest"]}')
        eventbridge.put_targets(
            Rule="all-outcomes", EventBusName=EVENT_BUS, Targets=[{"Id": "subscriber", "Arn": events_queue_arn}]
        )
        self.client("dynamodb").create_table(
            TableName=IDEMPOTENCY_TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.archive = ArchiveEmulator(admin_token=self.token, s3_client=s3, bucket=ARCHIVE_BUCKET).start()
        return self

    def stop(self) -> None:
        self.deactivate()
        if self.archive is not None:
            self.archive.stop()
        self.s3_server.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        """The variables that point lambda_ingest (and the AWS CLI / boto3) at this stack."""
        assert self.archive is not None
        endpoint = self.s3_server.endpoint_url
        return {
            "API_ROOT": self.archive.api_root,
            "AUTH_TOKEN": self.token,
            "BUCKET": ARCHIVE_BUCKET,
            "S3_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
            "EVENT_BUS_NAME": EVENT_BUS,
            "LANDING_BUCKET": LANDING_BUCKET,
        }

    def activate(self) -> None:
        """Configure this process (the in-process handler) for the stack, as a deployed function is.

        `deactivate()` (and `stop()`) put the environment back, so a caller such as a test or a notebook
        is not left pointing at a stack that is gone.
        """
        env = {**self.environment(), "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_SERVICE_NAME": "lambda_ingest"}
        if self._saved_env is None:
            self._saved_env = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        _reset_process_state()

    def deactivate(self) -> None:
        """Undo `activate()`: restore the environment variables it changed."""
        saved, self._saved_env = self._saved_env, None
        if saved is None:
            return
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _reset_process_state()

    def queued_event(self, max_messages: int = 10, wait_seconds: int = 0) -> dict[str, Any] | None:
        """Up to `max_messages` queued notifications as the SQS event Lambda would receive (None if empty)."""
        sqs = self.client("sqs")
        got = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            AttributeNames=["All"],
            WaitTimeSeconds=wait_seconds,
        ).get("Messages", [])
        return sqs_event(got, self.queue_arn) if got else None

    def received_events(self) -> list[dict[str, Any]]:
        """The outcome events the subscriber queue got so far (removed from it), oldest first."""
        import json

        sqs, found = self.client("sqs"), []
        while got := sqs.receive_message(QueueUrl=self.events_queue_url, MaxNumberOfMessages=10).get("Messages", []):
            for message in got:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return sorted(found, key=lambda event: event.get("time", ""))

    def acknowledge(self, event: dict[str, Any], failures: list[dict[str, str]]) -> None:
        """What the event source mapping does: delete the messages that did not fail."""
        failed = {f["itemIdentifier"] for f in failures}
        sqs = self.client("sqs")
        for record in event["Records"]:
            if record["messageId"] not in failed:
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])


def _reset_process_state() -> None:
    """Forget cached settings, clients and the idempotency-aware processor (they read the environment)."""
    from lambda_ingest.outcomes import reset_processor
    from lambda_ingest.settings import reset_settings

    reset_settings()
    reset_processor()
