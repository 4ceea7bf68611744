"""Decode the events that name landing objects: S3 notifications (direct or inside SQS) and EventBridge.

Keys arrive URL-encoded (`+` for a space, `%xx`); they are decoded here, once. Test events and folder
markers yield nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class ObjectRef:
    """One landing object named by an event, with what pins its bytes."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    event_time: str | None = None
    receive_count: int | None = None  # SQS ApproximateReceiveCount; None when not delivered through SQS
    # S3's per-key event order: distinct for every PUT of a key, so it tells two uploads of the same bytes apart
    # in an unversioned bucket (where the ETag is the same).
    sequencer: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def upload_identity(self) -> str:
        """What tells this upload of the key from any other: the version id, else S3's sequencer, else
        ETag and event time (never the ETag alone: the same bytes uploaded again share it)."""
        if self.version_id and self.version_id != "null":
            return f"version:{self.version_id}"
        if self.sequencer:
            return f"sequencer:{self.sequencer}"
        return f"etag:{self.etag or ''}@{self.event_time or ''}"


def is_sqs_event(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return bool(records) and isinstance(records, list) and records[0].get("eventSource") == "aws:sqs"


def is_eventbridge_event(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.s3" and "detail" in event


def from_s3_notification(notification: dict[str, Any]) -> list[ObjectRef]:
    """Every object of an S3 event notification (`Records[].s3`); [] for `s3:TestEvent`."""
    if notification.get("Event") == "s3:TestEvent":
        return []
    refs = []
    for record in notification.get("Records") or []:
        s3 = record.get("s3")
        if not s3 or not str(record.get("eventName", "ObjectCreated")).startswith("ObjectCreated"):
            continue
        refs.append(_ref(s3["bucket"]["name"], s3.get("object", {}), record.get("eventTime"), "versionId", "eTag"))
    return [ref for ref in refs if not ref.key.endswith("/")]


def from_eventbridge(event: dict[str, Any]) -> list[ObjectRef]:
    """An S3 "Object Created" event delivered by EventBridge (its keys are URL-encoded too)."""
    if event.get("detail-type") != "Object Created":
        return []
    detail = event["detail"]
    ref = _ref(detail["bucket"]["name"], detail.get("object", {}), event.get("time"), "version-id", "etag")
    return [] if ref.key.endswith("/") else [ref]


def _ref(bucket: str, obj: dict[str, Any], event_time: str | None, version_field: str, etag_field: str) -> ObjectRef:
    """The object of an S3 notification or an EventBridge event: the same fields, spelt differently."""
    return ObjectRef(
        bucket=bucket,
        key=unquote_plus(obj["key"]),  # URL-encoded in both
        version_id=obj.get(version_field) or None,
        etag=obj.get(etag_field) or None,
        size=obj.get("size"),
        event_time=event_time,
        sequencer=obj.get("sequencer") or None,
    )


def from_message_body(body: str, receive_count: int | None = None) -> list[ObjectRef]:
    """An SQS message body: an S3 notification, an EventBridge event, or an SNS envelope of either."""
    payload = json.loads(body)
    if isinstance(payload, dict) and payload.get("Type") == "Notification" and "Message" in payload:
        payload = json.loads(payload["Message"])  # S3 -> SNS -> SQS fan-out
    if not isinstance(payload, dict):
        raise ValueError("message body is not a JSON object")
    refs = from_eventbridge(payload) if is_eventbridge_event(payload) else from_s3_notification(payload)
    return [replace(ref, receive_count=receive_count) for ref in refs]


def object_refs(event: dict[str, Any]) -> list[ObjectRef]:
    """The objects of a direct (non-SQS) invocation."""
    if is_eventbridge_event(event):
        return from_eventbridge(event)
    return from_s3_notification(event)
