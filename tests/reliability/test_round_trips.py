"""Round trips per ingest (issue 14 point 5): every request a small frame costs, and which ones overlap.

Under a realistic S3 every request pays a first-byte latency, so the number of requests made one after
another is the time of a small ingest. Counted here at the HTTP layer (every attempt the engine's S3 client
sends, and every request the archive emulator receives), through the handler, so a regression that adds
a request or puts one back on the critical path fails here, not only in the benchmark.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from lambda_ingest import store
from lambda_ingest.handler import handler
from lambda_ingest.local.synthetic import make_frame_bytes
from tests.conftest import LANDING
from tests.reliability.support import S3Faults, assert_exactly_once, md5, wait_until

NAME = "cpt1m010-kb70-20151219-0073-e00"


class Overlaps:
    """Holds an S3 operation's first request until `condition` holds (or 5 s), and notes whether it did:
    true only if the awaited request was sent while the held one was in flight, i.e. beside it."""

    def __init__(self, s3_faults: S3Faults) -> None:
        self.seen: dict[str, bool] = {}
        s3_faults.install()
        s3_faults._client.meta.events.register_first("before-send.s3", self._hold, unique_id="round-trip-overlaps")
        self._client = s3_faults._client
        self._conditions: dict[str, Callable[[], bool]] = {}
        self._lock = threading.Lock()

    def hold(self, operation: str, until: Callable[[], bool]) -> None:
        self._conditions[operation] = until

    def _hold(self, request: Any, **kwargs: Any) -> None:
        operation = request.context.get("operation_name") or kwargs.get("event_name", "").rsplit(".", 1)[-1]
        with self._lock:
            condition = self._conditions.pop(operation, None)
        if condition is not None:
            try:
                wait_until(condition, what=f"a request beside {operation}")
                self.seen[operation] = True
            except AssertionError:
                self.seen[operation] = False

    def close(self) -> None:
        self._client.meta.events.unregister("before-send.s3", unique_id="round-trip-overlaps")


def test_a_small_single_part_frame_costs_four_s3_requests_three_in_a_row(s3, archive_api, queue, context, s3_faults):
    # Given a small frame uploaded in one PUT (its ETag is its md5, which the notification carries)
    data = make_frame_bytes(NAME, ".fits.fz", data_bytes=2880)
    s3.put_object(Bucket=LANDING, Key=f"{NAME}.fits.fz", Body=data)
    overlaps = Overlaps(s3_faults)
    lookups = lambda: any(m == "GET" and "frames/" in t for m, t, _ in archive_api.requests_seen)  # noqa: E731
    overlaps.hold("GetObject", lookups)
    overlaps.hold("CopyObject", lambda: s3_faults.attempts["ListObjectVersions"] > 0)
    archive_api.requests_seen.clear()
    try:
        # When its notification is delivered
        [invocation] = queue.deliver_all(handler, context)
    finally:
        overlaps.close()
    assert invocation.failed == []
    assert_exactly_once(s3, archive_api, {(NAME, ".fits.fz"): data})
    # Then S3 saw one ranged GET (no HEAD: the GET describes the object), the copy, the version listing of
    # the archive key and the landing delete; the archive saw the duplicate lookup and the registration
    assert dict(s3_faults.attempts) == {"GetObject": 1, "ListObjectVersions": 1, "CopyObject": 1, "DeleteObject": 1}
    assert [(m, t.split("?")[0].rsplit("/api", 1)[-1]) for m, t, _ in archive_api.requests_seen] == [
        ("GET", "/frames/"),
        ("POST", "/frames/"),
    ]
    # And the lookup ran beside the first GET, the listing beside the copy: in a row, only the GET, the
    # copy, the POST and the landing delete (ocs_ingester: lookup, download, upload, POST)
    assert overlaps.seen == {"GetObject": True, "CopyObject": True}


def test_a_small_multipart_frame_adds_only_its_md5_ranges(s3, archive_api, s3_faults) -> None:
    from lambda_ingest.ingest import ingest_object

    # Given a small frame uploaded in two parts (its ETag is not an md5: the object must be read for one)
    data = make_frame_bytes(NAME, ".fits", data_bytes=6 * 2**20)
    key = f"{NAME}.fits"
    upload = s3.create_multipart_upload(Bucket=LANDING, Key=key)["UploadId"]
    parts = []
    for number, first in enumerate((0, 5 * 2**20), 1):
        piece = data[first : first + 5 * 2**20] if number == 1 else data[first:]
        etag = s3.upload_part(Bucket=LANDING, Key=key, UploadId=upload, PartNumber=number, Body=piece)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    done = s3.complete_multipart_upload(Bucket=LANDING, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    s3_faults.install()
    archive_api.requests_seen.clear()
    # When it is ingested as its notification names it (moto notifies a multipart upload twice: one ingest)
    result = ingest_object(LANDING, key, etag=done["ETag"])
    # Then it is registered with the md5 of its bytes, and the only requests added are the md5's ranges
    assert result.status == "ingested"
    assert archive_api.versions()[0]["md5"] == md5(data)
    ranges = -(-len(data) // store.MD5_CHUNK_SIZE)
    assert dict(s3_faults.attempts) == {
        "GetObject": 1 + ranges,
        "ListObjectVersions": 1,
        "CopyObject": 1,
        "DeleteObject": 1,
    }
    assert [m for m, _, _ in archive_api.requests_seen] == ["GET", "POST"]
