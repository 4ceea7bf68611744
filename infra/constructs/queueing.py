"""The ingest queue fed by the landing bucket's ObjectCreated events, and its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants as c
from infra.config import IngestConfig

# The longest SQS keeps a message: a long archive outage must not age events out of the queue.
RETENTION = Duration.days(14)


class Queueing(Construct):
    def __init__(self, scope: Construct, construct_id: str, config: IngestConfig, landing: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        # SSE-SQS (not a KMS key): S3 can deliver to it without a key policy, and it costs nothing extra.
        common = {"encryption": sqs.QueueEncryption.SQS_MANAGED, "enforce_ssl": True, "retention_period": RETENTION}
        self.dead_letter_queue = sqs.Queue(self, c.DEAD_LETTER_QUEUE_ID, **common)
        self.queue = sqs.Queue(
            self,
            c.INGEST_QUEUE_ID,
            **common,
            visibility_timeout=Duration.seconds(config.visibility_timeout_seconds),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=config.max_receive_count
            ),
        )
        # One notification per suffix (S3 allows a single suffix rule per notification). CDK writes them
        # with a custom resource: on an imported bucket it merges them with the notifications the bucket
        # already has; on the bucket this stack creates it owns the whole configuration.
        destination = s3n.SqsDestination(self.queue)
        prefix = config.landing_prefix or None
        if config.landing_suffixes:
            for suffix in config.landing_suffixes:
                filt = s3.NotificationKeyFilter(prefix=prefix, suffix=suffix)
                landing.add_event_notification(s3.EventType.OBJECT_CREATED, destination, filt)
        elif prefix:
            landing.add_event_notification(
                s3.EventType.OBJECT_CREATED, destination, s3.NotificationKeyFilter(prefix=prefix)
            )
        else:
            landing.add_event_notification(s3.EventType.OBJECT_CREATED, destination)
