"""Helpers of the reliability suite: SQS delivery as Lambda's event source mapping does it, S3 fault
injection through botocore's public event hooks, log capture, and the one "exactly once, nothing lost" check.

Everything runs in-process: moto's `mock_aws` for S3/SQS and the archive emulator on loopback.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from lambda_ingest.clients import new_session
from lambda_ingest.local.stack import sqs_event
from tests.conftest import ARCHIVE, LANDING

REGION = "us-east-1"
MAX_RECEIVE_COUNT = 5  # the deployed queue's redrive policy moves a message to the DLQ after this many receives


class Crash(BaseException):
    """A Lambda killed mid-flight (timeout, out of memory): no `except Exception` and no cleanup runs."""


# --------------------------------------------------------------------------------------------------------
# SQS: the landing bucket's notifications, delivered to the handler as the event source mapping does
# --------------------------------------------------------------------------------------------------------


@dataclass
class Invocation:
    """One handler invocation: the message ids it got, those it reported failed, and how long it took."""

    message_ids: list[str]
    failed: list[str]
    seconds: float
    crashed: bool = False
    raised: str | None = None
    response: dict[str, Any] | None = None


@dataclass
class IngestQueue:
    """The ingest queue (with its DLQ) that the landing bucket notifies on every ObjectCreated."""

    sqs: Any
    url: str
    arn: str
    dlq_url: str
    invocations: list[Invocation] = field(default_factory=list)

    def receive(self, limit: int = 10) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=limit, VisibilityTimeout=60, AttributeNames=["All"]
        )
        return got.get("Messages", [])

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The SQS event Lambda builds from received messages."""
        return sqs_event(messages, self.arn, REGION)

    def deliver_once(self, handler: Callable[..., Any], context: Any, limit: int = 10) -> Invocation | None:
        """Receive one batch and invoke the handler with it; then do what Lambda does with the response.

        Records reported in `batchItemFailures` become visible again at once (SQS would wait for the
        visibility timeout); the others are deleted. An invocation that raises fails the whole batch, as
        in Lambda: a crash (BaseException), or an error before any record ran (an invalid configuration).
        None when the queue is empty.
        """
        messages = self.receive(limit)
        if not messages:
            return None
        event = self.event(messages)
        ids = [m["MessageId"] for m in messages]
        start = time.perf_counter()
        try:
            response = handler(event, context)
        except Crash:
            invocation = Invocation(ids, list(ids), time.perf_counter() - start, crashed=True)
        except Exception as exc:
            invocation = Invocation(ids, list(ids), time.perf_counter() - start, raised=type(exc).__name__)
        else:
            failed = [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]
            invocation = Invocation(ids, failed, time.perf_counter() - start, response=response)
        done = [m for m in messages if m["MessageId"] not in invocation.failed]
        again = [m for m in messages if m["MessageId"] in invocation.failed]
        if done:
            entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)]
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
        if again:
            entries = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for n, m in enumerate(again)
            ]
            self.sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
        self.invocations.append(invocation)
        return invocation

    def deliver_all(self, handler: Callable[..., Any], context: Any, max_invocations: int = 50) -> list[Invocation]:
        """Deliver until the queue is empty (redeliveries included); at most `max_invocations` invocations."""
        done: list[Invocation] = []
        for _ in range(max_invocations):
            invocation = self.deliver_once(handler, context)
            if invocation is None:
                return done
            done.append(invocation)
        raise AssertionError(f"the queue is not empty after {max_invocations} invocations: a retry loop")

    def depth(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10).get("Messages", [])


def make_queue(s3: Any) -> IngestQueue:

    sqs = new_session().client("sqs", region_name=REGION)
    dlq_url = sqs.create_queue(QueueName="ingest-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName="ingest",
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=LANDING,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    return IngestQueue(sqs, url, arn, dlq_url)


# --------------------------------------------------------------------------------------------------------
# S3 faults: botocore's before-call hook answers instead of S3 for the next N calls of an operation
# --------------------------------------------------------------------------------------------------------


S3_ERRORS = {
    "PreconditionFailed": (412, "At least one of the pre-conditions you specified did not hold"),
    "SlowDown": (503, "Please reduce your request rate."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "ServiceUnavailable": (503, "Service is unable to handle request."),
    # The deployment's faults (issue 10): permissions, credentials, encryption keys.
    "AccessDenied": (403, "Access Denied"),
    "ExpiredToken": (400, "The provided token has expired."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "KMS.DisabledException": (400, "arn:aws:kms:us-east-1:000000000000:key/k is disabled."),
}


def s3_answer(operation_model: Any, method: str, url: str, code: str) -> tuple[Any, dict[str, Any]]:
    """S3's error answer `code` to a request, as botocore sees it: the HTTP response and botocore's own
    parse of it (a HEAD's answer has no body, so botocore sees only its status, as with S3)."""
    from botocore.awsrequest import AWSResponse
    from botocore.parsers import create_parser

    status, message = S3_ERRORS[code]
    body = b"" if method == "HEAD" else s3_error_xml(code, message)
    headers = {"x-amz-request-id": "FAULT", "Content-Type": "application/xml"}
    wire = {"status_code": status, "headers": headers, "body": body}
    parsed = create_parser("rest-xml").parse(wire, operation_model.output_shape)
    return AWSResponse(url, status, headers, None), parsed


class S3Faults:
    """Make the next `times` calls of an S3 operation fail the way S3 answers, without sending them.

    Installed on the engine's own client through botocore's public `before-call` hook, which answers a
    call in S3's place: botocore raises the ClientError it raises for that answer, and nothing reaches moto.
    The answer stands for the whole call, retries included (botocore retries below this hook): a fault that
    outlasted every attempt. `calls` counts the engine's calls per operation (answered ones included);
    `attempts` the requests actually sent (botocore's retries included, answered calls never sent).
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self._pending: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._client: Any = None
        self._copy_source_reader: Any = None

    def install(self) -> None:
        from lambda_ingest import clients

        client = clients.s3()
        if client is not self._client:
            client.meta.events.register("before-call.s3", self._before_call, unique_id="reliability-s3-faults")
            client.meta.events.register("before-send.s3", self._before_send, unique_id="reliability-s3-attempts")
            self._client = client

    def fail(self, operation: str, times: int = 1, code: str = "SlowDown") -> None:
        self.install()
        with self._lock:
            self._pending.setdefault(operation, []).extend([code] * times)

    def clear(self) -> None:
        """Drop every fault not yet met (the cause was fixed)."""
        with self._lock:
            self._pending.clear()

    def pending(self, operation: str) -> int:
        with self._lock:
            return len(self._pending.get(operation, []))

    def enforce_copy_source_if_match(self, reader: Any) -> None:
        """Answer CopyObject 412 PreconditionFailed when `x-amz-copy-source-if-match` no longer matches the
        source's ETag, as S3 does (moto ignores that header). `reader` is an unhooked client to HEAD with."""
        self.install()
        self._copy_source_reader = reader

    def _before_call(self, model: Any, params: dict[str, Any], **kwargs: Any) -> Any:
        operation = model.name
        with self._lock:
            self.calls[operation] += 1
            queue = self._pending.get(operation)
            code = queue.pop(0) if queue else None
        if code is None and operation == "CopyObject" and self._copy_source_reader is not None:
            code = self._copy_precondition(params["headers"])
        if code is None:
            return None
        return s3_answer(model, params["method"], params["url"], code)

    def _before_send(self, request: Any, **kwargs: Any) -> None:
        operation = request.context.get("operation_name") or kwargs.get("event_name", "").rsplit(".", 1)[-1]
        with self._lock:
            self.attempts[operation] += 1

    def _copy_precondition(self, headers: dict[str, Any]) -> str | None:
        wanted = headers.get("x-amz-copy-source-if-match")
        if not wanted:
            return None
        source = unquote(headers["x-amz-copy-source"]).lstrip("/")
        path, _, query = source.partition("?versionId=")
        bucket, _, key = path.partition("/")
        extra = {"VersionId": query} if query else {}
        current = self._copy_source_reader.head_object(Bucket=bucket, Key=key, **extra)["ETag"]
        wanted = wanted.decode() if isinstance(wanted, bytes) else wanted
        return None if current.strip('"') == wanted.strip('"') else "PreconditionFailed"


def s3_error_xml(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        "<RequestId>FAULT</RequestId><HostId>reliability</HostId></Error>"
    ).encode()


# --------------------------------------------------------------------------------------------------------
# Logs: the Powertools logger's JSON lines
# --------------------------------------------------------------------------------------------------------


class LogCapture:
    """Redirects the Powertools logger's stream; `lines` are its JSON records, parsed."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip().startswith("{")]

    def with_message(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("message") == message]


# --------------------------------------------------------------------------------------------------------
# The one convergence check
# --------------------------------------------------------------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def archive_object_versions(s3: Any) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=ARCHIVE):
        versions += page.get("Versions", [])
        assert not page.get("DeleteMarkers"), f"delete markers in the archive bucket: {page['DeleteMarkers']}"
    return versions


def landing_keys(s3: Any) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=LANDING):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


Expected = dict[tuple[str, str], bytes] | Iterable[tuple[str, str, bytes]]


def assert_exactly_once(s3: Any, archive_api: Any, expected: Expected, *, landing_left: Iterable[str] = ()) -> None:
    """Every expected file is registered exactly once and nothing else is; nothing is lost or orphaned.

    `expected` maps (basename, extension) to the bytes that must be downloadable through the registered
    version (or lists (basename, extension, bytes), for several versions of one name). Checks: the
    archive's versions are exactly these (one each, right md5); each registered version key is a real
    object version in the archive bucket holding exactly those bytes; the archive bucket holds no other
    version (no orphan); the landing bucket holds exactly `landing_left`.
    """
    registered = archive_api.versions()
    seen = Counter((v["basename"], v["extension"], v["md5"]) for v in registered)
    triples = [(b, e, data) for (b, e), data in expected.items()] if isinstance(expected, dict) else expected
    want = Counter((b, e, md5(data)) for b, e, data in triples)
    assert seen == want, f"registered {sorted(seen)} != expected {sorted(want)}"
    objects = {v["VersionId"]: v for v in archive_object_versions(s3)}
    for version in registered:
        assert version["key"] in objects, f"registered version {version['key']} has no object version: bytes lost"
        obj = objects[version["key"]]
        body = s3.get_object(Bucket=ARCHIVE, Key=obj["Key"], VersionId=version["key"])["Body"].read()
        assert md5(body) == version["md5"], f"{obj['Key']}?versionId={version['key']} holds other bytes"
    orphans = sorted(set(objects) - {v["key"] for v in registered})
    assert not orphans, f"orphaned archive versions: {[(objects[o]['Key'], o) for o in orphans]}"
    assert sorted(landing_keys(s3)) == sorted(landing_left)


# --------------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------------


def frame_files(
    count: int, *, first_seq: int = 100, extension: str = ".fits", data_bytes: int = 4096
) -> dict[tuple[str, str], bytes]:
    """`count` distinct small synthetic LCO frames, keyed by (basename, extension)."""
    from lambda_ingest.local.synthetic import frame_name, make_frame_bytes

    files = {}
    for seq in range(first_seq, first_seq + count):
        basename = frame_name(seq=seq, ext="")
        files[(basename, extension)] = make_frame_bytes(basename, extension, data_bytes=data_bytes, seed=seq)
    return files


def upload(s3: Any, files: dict[tuple[str, str], bytes], prefix: str = "") -> dict[str, dict[str, Any]]:
    """PUT each file into the landing bucket (each PUT notifies the queue); returns the PUT responses by key."""
    return {
        f"{prefix}{b}{e}": s3.put_object(Bucket=LANDING, Key=f"{prefix}{b}{e}", Body=data)
        for (b, e), data in files.items()
    }


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll (every 10 ms) until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Add measured figures under `name` to the JSON file named by RELIABILITY_FIGURES (if set)."""
    import os
    from pathlib import Path

    target = os.environ.get("RELIABILITY_FIGURES")
    if not target:
        return
    path = Path(target)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = figures
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
