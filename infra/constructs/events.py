"""Where the function publishes its outcome events (docs/events.md), and an example consumer.

`event_bus` context: `create` (a bus of this stack), `default` (the account's default bus), an existing
bus's name, or `none` (no EVENT_BUS_NAME: the function publishes nothing). With `archived_frames_queue`
a rule sends every "Frame Archived" event to a new SQS queue, e.g. for a reduction pipeline to consume.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants as c
from infra.config import IngestConfig

RETENTION = Duration.days(14)


class OutcomeEvents(Construct):
    def __init__(self, scope: Construct, construct_id: str, config: IngestConfig) -> None:
        super().__init__(scope, construct_id)
        self.bus: events.IEventBus | None
        if config.event_bus == "none":
            self.bus = None
        elif config.event_bus == "create":
            self.bus = events.EventBus(self, c.EVENT_BUS_ID, description="lambda_ingest outcome events")
        else:  # "default" or the name of an existing bus
            self.bus = events.EventBus.from_event_bus_name(self, c.EVENT_BUS_ID, config.event_bus)

        self.archived_queue: sqs.Queue | None = None
        if config.archived_frames_queue and self.bus is not None:
            self.archived_queue = self._archived_frames_queue(self.bus)

    def _archived_frames_queue(self, bus: events.IEventBus) -> sqs.Queue:
        # SSE-SQS: EventBridge delivers to it without a KMS key policy.
        dead_letters = sqs.Queue(
            self,
            "ArchivedFramesDeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=RETENTION,
        )
        queue = sqs.Queue(
            self,
            c.ARCHIVED_FRAMES_QUEUE_ID,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=RETENTION,
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=5),
        )
        events.Rule(
            self,
            "ArchivedFramesRule",
            event_bus=bus,
            description="Example: every archived frame to an SQS queue (e.g. a reduction pipeline)",
            event_pattern=events.EventPattern(source=[c.EVENT_SOURCE], detail_type=[c.ARCHIVED_DETAIL_TYPE]),
            # Events EventBridge could not deliver land in the queue's own DLQ instead of being dropped.
            targets=[targets.SqsQueue(queue, dead_letter_queue=dead_letters, retry_attempts=10)],
        )
        return queue
