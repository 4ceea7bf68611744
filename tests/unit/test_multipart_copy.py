"""Multipart copy into the archive: how an object is cut into parts, and no upload left behind on failure.

The parts are observed where S3 shows them: a multipart object's ETag is the md5 of its parts' md5s
followed by "-<number of parts>", so the ETag of the archive copy says exactly where each part ended.
A part's failure is injected with botocore's public event hooks on the engine's own client.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from lambda_ingest import clients, store
from lambda_ingest.errors import StorageUnavailableError
from tests.conftest import ARCHIVE, LANDING

MIB = 1024**2
GIB = 1024**3
DATA = os.urandom(12 * MIB)  # once per module; each case copies a prefix of it
COPY_ATTRS = {"content_type": "image/fits", "content_disposition": "attachment", "storage_class": "STANDARD"}


def configure_copy(monkeypatch: pytest.MonkeyPatch, *, threshold: int, part_size: int) -> None:
    """The copy knobs, set where the engine reads them (store's constants)."""
    monkeypatch.setattr(store, "COPY_MULTIPART_THRESHOLD", threshold)
    monkeypatch.setattr(store, "COPY_PART_SIZE", part_size)


def multipart_etag(data: bytes, part_size: int) -> str:
    """The ETag S3 gives an object assembled from `part_size` parts of `data`."""
    parts = [
        hashlib.md5(data[i : i + part_size], usedforsecurity=False).digest() for i in range(0, len(data), part_size)
    ]
    return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"


def landing_object(s3: Any, size: int) -> store.ObjectInfo:
    s3.put_object(Bucket=LANDING, Key="big.fits", Body=DATA[:size])
    return store.head(LANDING, "big.fits")


# name -> (object size, threshold, configured part size, expected part size)
CASES = {
    "three-parts-last-short": (11 * MIB + 1, 5 * MIB, 5 * MIB, 5 * MIB),
    "exact-multiple": (10 * MIB, 5 * MIB, 5 * MIB, 5 * MIB),
    "configured-6MiB": (11 * MIB, 5 * MIB, 6 * MIB, 6 * MIB),
    "one-byte-over-threshold": (5 * MIB + 1, 5 * MIB, 5 * MIB, 5 * MIB),
}


@pytest.mark.parametrize(("size", "threshold", "configured", "expected"), CASES.values(), ids=CASES)
def test_copy_above_the_threshold_is_made_of_parts_of_the_configured_size(
    s3: Any, monkeypatch: pytest.MonkeyPatch, size: int, threshold: int, configured: int, expected: int
) -> None:
    # Given an object above the multipart threshold
    configure_copy(monkeypatch, threshold=threshold, part_size=configured)
    obj = landing_object(s3, size)
    # When it is copied into the archive
    version = store.copy_to_archive(obj, ARCHIVE, "raw/big.fits", **COPY_ATTRS)
    # Then the archive version holds the same bytes, assembled from ceil(size / part) parts cut at each part
    copy = s3.get_object(Bucket=ARCHIVE, Key="raw/big.fits", VersionId=version)
    assert copy["ETag"].strip('"') == multipart_etag(DATA[:size], expected)
    assert copy["ETag"].strip('"').endswith(f"-{math.ceil(size / expected)}")
    assert copy["Body"].read() == DATA[:size]


def test_copy_at_the_threshold_is_one_copy_object(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an object exactly at the threshold, When copied, Then it is one CopyObject (a plain md5 ETag)
    configure_copy(monkeypatch, threshold=5 * MIB, part_size=5 * MIB)
    obj = landing_object(s3, 5 * MIB)
    version = store.copy_to_archive(obj, ARCHIVE, "raw/big.fits", **COPY_ATTRS)
    copy = s3.head_object(Bucket=ARCHIVE, Key="raw/big.fits", VersionId=version)
    assert copy["ETag"].strip('"') == hashlib.md5(DATA[: 5 * MIB], usedforsecurity=False).hexdigest()


class FailOnePart:
    """Answers the `nth` UploadPartCopy of the engine's client with S3's 500 InternalError, before it is sent.

    `before-call` is botocore's public hook for answering a call without sending it (botocore then raises
    the ClientError it would raise for that answer); the other calls reach moto unchanged.
    """

    def __init__(self, nth: int) -> None:
        self.nth, self.calls, self.aborted = nth, 0, []
        self._lock = threading.Lock()

    def install(self) -> None:
        events = clients.s3().meta.events
        events.register("before-call.s3.UploadPartCopy", self.before_part, unique_id="tests12-fail-part")
        events.register("after-call.s3.AbortMultipartUpload", self.after_abort, unique_id="tests12-abort")

    def before_part(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        with self._lock:
            self.calls += 1
            if self.calls != self.nth:
                return None
        error = {"Code": "InternalError", "Message": "We encountered an internal error. Please try again."}
        return AWSResponse(params["url"], 500, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}

    def after_abort(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        self.aborted.append(http_response.status_code)


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_a_failed_part_aborts_the_upload_and_leaves_nothing(s3: Any, monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    # Given a three-part copy whose `nth` part S3 fails
    configure_copy(monkeypatch, threshold=5 * MIB, part_size=5 * MIB)
    obj = landing_object(s3, 11 * MIB)
    fault = FailOnePart(nth)
    fault.install()
    # When it is copied into the archive
    with pytest.raises(StorageUnavailableError, match=r"part \d: S3 answered InternalError"):
        store.copy_to_archive(obj, ARCHIVE, "raw/big.fits", **COPY_ATTRS)
    # Then the multipart upload was aborted (S3 keeps no parts, bills no storage), and no version was made
    assert fault.aborted == [204]
    assert s3.list_multipart_uploads(Bucket=ARCHIVE).get("Uploads", []) == []
    assert s3.list_object_versions(Bucket=ARCHIVE).get("Versions", []) == []
    # And the landing object is untouched, so the redelivery can copy it again
    assert s3.get_object(Bucket=LANDING, Key="big.fits")["Body"].read() == DATA[: 11 * MIB]


# S3's multipart limits: 5 MiB..5 GiB a part, at most 10,000 parts.
# name -> (object size, configured part size, expected part size)
PART_SIZES = {
    "configured-wins": (100 * MIB, 8 * MIB, 8 * MIB),
    "raised-to-fit-10000-parts": (200 * GIB, 8 * MIB, math.ceil(200 * GIB / 10_000)),
    "largest-object-5TiB": (5 * 1024 * GIB, 5 * MIB, math.ceil(5 * 1024 * GIB / 10_000)),
    "raised-to-5MiB": (50 * MIB, 1 * MIB, 5 * MIB),
    "capped-at-5GiB": (6 * GIB, 6 * GIB, 5 * GIB),
    "exactly-10000-parts": (10_000 * 8 * MIB, 8 * MIB, 8 * MIB),
}


@pytest.mark.skipif(not hasattr(store, "part_size"), reason="store.part_size arrives with wip/perf")
@pytest.mark.parametrize(("size", "configured", "expected"), PART_SIZES.values(), ids=PART_SIZES)
def test_part_size_is_the_configured_one_raised_to_fit_s3s_limits(size: int, configured: int, expected: int) -> None:
    # Given an object of `size` and a configured part size, When the part size is chosen
    got = store.part_size(size, configured)  # type: ignore[attr-defined]
    # Then it is max(configured, ceil(size / 10,000)) within 5 MiB..5 GiB, and the parts fit in 10,000
    assert got == expected
    assert 5 * MIB <= got <= 5 * GIB and math.ceil(size / got) <= 10_000
