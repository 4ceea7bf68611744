"""`lambda-ingest replay --enqueue QUEUE_URL s3://bucket/prefix`: let the deployed fleet do a backfill.

Instead of ingesting on this machine, every object under the prefix becomes one S3-notification-shaped
message on the ingest queue (SendMessageBatch, 10 a call), so the deployed function works through them at
its configured concurrency, with the queue's retries and dead-letter queue. Listing and sending stream
(one listing page and a bounded number of batches in flight), so memory stays flat for any prefix.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote_plus

from lambda_ingest import clients, store
from lambda_ingest.errors import IngestError

SQS_BATCH = 10  # SendMessageBatch's limit
EVENT_NAME = "ObjectCreated:Put"  # the handler accepts any ObjectCreated:*; Put is what S3 sends for most
EVENT_SOURCE_NOTE = "lambda-ingest-replay"  # in userIdentity, so a log reader can tell a replay from an upload
SEND_ATTEMPTS = 3  # entries SQS reports failed (throttling) are sent again this many times in all


def parse_s3_url(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix


def list_objects(bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under the prefix, one listing page at a time (folder markers left out)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        for page in clients.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):
                    yield item
    except (ClientError, BotoCoreError) as exc:
        raise store.translate(exc, f"list s3://{bucket}/{prefix}") from exc


def notification(bucket: str, item: dict[str, Any], region: str | None) -> dict[str, Any]:
    """The S3 event notification S3 itself sends for a new object (key URL-encoded, as S3 encodes it)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region or "",
                "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
                "eventName": EVENT_NAME,
                "userIdentity": {"principalId": EVENT_SOURCE_NOTE},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": EVENT_SOURCE_NOTE,
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(item["Key"], safe="/"),
                        "size": item.get("Size", 0),
                        # The handler pins the bytes by ETag: an object overwritten meanwhile is not mistaken
                        # for the listed one (its own upload event ingests it).
                        "eTag": str(item.get("ETag", "")).strip('"'),
                    },
                },
            }
        ]
    }


def _batches(items: Iterable[dict[str, Any]], size: int = SQS_BATCH) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Enqueuer:
    """Sends notifications for listed objects; counts `enqueued` and `failed`; reports each failure."""

    def __init__(self, queue_url: str, bucket: str, *, region: str | None = None) -> None:
        self.queue_url, self.bucket, self.region = queue_url, bucket, region
        self.counts: Counter[str] = Counter()
        self.failures: list[tuple[str, str]] = []  # bounded by the caller draining it after each batch
        self.fatal: str | None = None  # a whole call refused (no such queue, access denied): stop listing
        self._lock = threading.Lock()
        self._sqs = clients.client("sqs")

    def send(self, batch: list[dict[str, Any]]) -> None:
        pending = {str(i): item for i, item in enumerate(batch)}
        reasons: dict[str, str] = {}
        for _ in range(SEND_ATTEMPTS):
            entries = [
                {"Id": i, "MessageBody": json.dumps(notification(self.bucket, item, self.region))}
                for i, item in pending.items()
            ]
            try:
                answer = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:  # the whole call failed: every entry of it is reported, none lost silently
                reasons = {i: f"{type(exc).__name__}: {exc}" for i in pending}
                # botocore already retried what can clear (throttling, 5xx); the rest fails every batch alike.
                self.fatal = self.fatal or reasons["0" if "0" in reasons else next(iter(reasons))]
                break
            for ok in answer.get("Successful", []):
                pending.pop(ok["Id"], None)
            failed = answer.get("Failed", [])
            reasons = {f["Id"]: f"{f.get('Code')}: {f.get('Message', '')}" for f in failed}
            # Sender faults (a malformed entry) do not improve with another try.
            if not pending or any(f.get("SenderFault") for f in failed):
                break
        with self._lock:
            self.counts["enqueued"] += len(batch) - len(pending)
            self.counts["failed"] += len(pending)
            for i, item in pending.items():
                self.failures.append((f"s3://{self.bucket}/{item['Key']}", reasons.get(i, "not sent")))

    def take_failures(self) -> list[tuple[str, str]]:
        with self._lock:
            taken, self.failures = self.failures, []
        return taken


class _Ticker:
    """A one-line running count on stderr, drawn only on a terminal (the total is unknown while listing)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())

    def show(self, counts: Counter[str]) -> None:
        if self.live:
            self.stream.write(f"\renqueue: {counts['enqueued']} enqueued, {counts['failed']} failed")
            self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def enqueue_prefix(
    queue_url: str, target: str, out: TextIO, *, concurrency: int = 4, region: str | None = None
) -> Enqueuer:
    """Send one notification per object under `target` (s3://bucket/prefix); print each failure to `out`."""
    bucket, prefix = parse_s3_url(target)
    enqueuer = Enqueuer(queue_url, bucket, region=region)
    ticker = _Ticker()
    in_flight: set[Future[None]] = set()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for batch in _batches(list_objects(bucket, prefix)):
            if enqueuer.fatal:
                break
            if len(in_flight) >= concurrency * 2:  # bounded memory: wait for a batch before listing more
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                _report(enqueuer, finished, out)
                ticker.show(enqueuer.counts)
            in_flight.add(pool.submit(enqueuer.send, batch))
        finished, _ = wait(in_flight)
        _report(enqueuer, finished, out)
    ticker.show(enqueuer.counts)
    ticker.done()
    return enqueuer


def _report(enqueuer: Enqueuer, finished: Iterable[Future[None]], out: TextIO) -> None:
    for future in finished:
        future.result()  # send() handles its own errors; anything else is a bug worth surfacing
    for uri, reason in enqueuer.take_failures():
        out.write(f"{uri}\tfailed\t{reason}\n")
    out.flush()


def cmd_enqueue(args: Any, out: TextIO) -> int:
    """The `replay --enqueue` subcommand: exit 0 when every listed object was enqueued."""
    from lambda_ingest.settings import get_settings

    try:
        enqueuer = enqueue_prefix(
            args.enqueue, args.target, out, concurrency=args.concurrency, region=get_settings().aws_region
        )
    except IngestError as exc:
        sys.stderr.write(f"lambda-ingest: error: {exc}\n")
        return 1
    counts = enqueuer.counts
    if enqueuer.fatal:
        sys.stderr.write(f"lambda-ingest: error: stopped enqueuing: {enqueuer.fatal}\n")
    total = counts["enqueued"] + counts["failed"]
    failed = f", {counts['failed']} failed" if counts["failed"] else ""
    out.write(f"{total} object{'' if total == 1 else 's'}: {counts['enqueued']} enqueued{failed}\n")
    return 0 if not counts["failed"] else 1
