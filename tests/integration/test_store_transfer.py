"""The md5 stream and the server-side copy on moto S3: parallel ranges in order, part sizing, tags, aborts.

Small objects and small chunk sizes set in code keep these quick; the benchmark measures the speed.
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from lambda_ingest import clients, store
from lambda_ingest.clients import new_session
from lambda_ingest.errors import ObjectChangedError, ObjectGoneError, StorageUnavailableError
from lambda_ingest.ingest import ingest_object
from tests.conftest import ARCHIVE, LANDING

NAME = "cpt1m010-kb70-20151219-0073-e00"
MIB = 1024**2
PART = 5 * MIB  # S3's smallest multipart upload part


def multipart_upload(s3: Any, key: str, data: bytes, **extra: Any) -> str:
    """Upload `data` in 5 MiB parts (an ETag that is not an md5); returns the ETag."""
    upload_id = s3.create_multipart_upload(Bucket=LANDING, Key=key, **extra)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), PART), 1):
        etag = s3.upload_part(
            Bucket=LANDING, Key=key, UploadId=upload_id, PartNumber=number, Body=data[start : start + PART]
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    done = s3.complete_multipart_upload(Bucket=LANDING, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    return str(done["ETag"]).strip('"')


def frame(data_bytes: int, extension: str = ".fits.fz") -> bytes:
    from lambda_ingest.local.synthetic import make_frame_bytes

    return make_frame_bytes(basename=NAME, extension=extension, data_bytes=data_bytes)


@pytest.fixture
def multipart_object(s3: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[store.ObjectInfo, bytes]:
    """A 12 MiB object of distinct bytes uploaded in three parts, read in 256 KiB ranges."""
    data = os.urandom(12 * MIB)
    multipart_upload(s3, "big.fits.fz", data)
    monkeypatch.setattr(store, "MD5_CHUNK_SIZE", 256 * 1024)
    return store.head(LANDING, "big.fits.fz"), data


# -- md5 stream -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("connections", [1, 4, 16])
def test_md5_of_a_multipart_object_is_the_md5_of_its_bytes(multipart_object, connections: int) -> None:
    # Given a multipart object (its ETag is not an md5); When its md5 is streamed on N connections
    obj, data = multipart_object
    assert not obj.etag_md5
    # Then the ranges were hashed in order: the md5 of the bytes
    assert store.stream_md5(obj, connections=connections) == hashlib.md5(data).hexdigest()


def test_md5_stream_holds_a_few_ranges_not_the_object(multipart_object) -> None:
    # Given a 12 MiB object read in 256 KiB ranges on 4 connections
    obj, data = multipart_object
    tracemalloc.start()
    try:
        digest = store.stream_md5(obj, connections=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then memory held is a few ranges (client and server copies included), far below the object's size
    assert digest == hashlib.md5(data).hexdigest()
    assert peak < 3 * MIB


def test_a_failed_range_is_fetched_again_alone(multipart_object, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a connection that breaks once while one range (at 1 MiB) is read
    obj, data = multipart_object
    fetch_range, asked = store.fetch_range, []

    def flaky(o: store.ObjectInfo, offset: int, buffer: memoryview, url: str | None = None) -> None:
        asked.append(offset)
        if offset == MIB and asked.count(offset) == 1:
            buffer[:10] = b"x" * 10  # a partial read left in the buffer must not survive the retry
            raise StorageUnavailableError("connection reset")
        fetch_range(o, offset, buffer, url)

    monkeypatch.setattr(store, "fetch_range", flaky)
    monkeypatch.setattr(store, "RANGE_RETRY_PAUSE", 0.0)
    # When the md5 is streamed; Then it is right, that range was read twice and every other once
    assert store.stream_md5(obj, connections=4) == hashlib.md5(data).hexdigest()
    assert asked.count(MIB) == 2
    assert sorted(set(asked)) == list(range(0, len(data), 256 * 1024))
    assert len(asked) == len(data) // (256 * 1024) + 1


def test_a_range_that_keeps_failing_fails_the_stream(multipart_object, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a range that fails at every attempt
    obj, _ = multipart_object
    fetch_range = store.fetch_range

    def broken(o: store.ObjectInfo, offset: int, buffer: memoryview, url: str | None = None) -> None:
        if offset == 2 * MIB:
            raise StorageUnavailableError("connection reset")
        fetch_range(o, offset, buffer, url)

    monkeypatch.setattr(store, "fetch_range", broken)
    monkeypatch.setattr(store, "RANGE_RETRY_PAUSE", 0.0)
    # When the md5 is streamed; Then the failure is transient (retried later), not a wrong md5
    with pytest.raises(StorageUnavailableError):
        store.stream_md5(obj, connections=4)


def test_md5_stream_of_an_object_replaced_meanwhile_is_refused(s3, multipart_object) -> None:
    # Given an unversioned landing object replaced after the event named it
    obj, _ = multipart_object
    s3.put_object(Bucket=LANDING, Key=obj.key, Body=b"other bytes")
    # When its md5 is streamed; Then every range is pinned to the event's ETag: the object changed
    with pytest.raises(ObjectChangedError):
        store.stream_md5(obj, connections=4)


# -- md5 stream over HTTP (a real local S3 endpoint): presigned ranges on kept-alive connections ----------


@pytest.fixture(scope="module")
def s3_server() -> Iterator[Any]:
    from lambda_ingest.local.s3 import LocalS3Server

    with LocalS3Server() as server:
        yield server


@pytest.fixture
def over_http(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A landing bucket on the local S3 server, lambda_ingest's clients pointed at it."""

    from lambda_ingest.settings import reset_settings

    s3_server.reset()
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.endpoint_url)
    reset_settings()
    client = new_session().client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1")
    client.create_bucket(Bucket=LANDING)
    client.put_bucket_versioning(Bucket=LANDING, VersioningConfiguration={"Status": "Enabled"})
    monkeypatch.setattr(store, "MD5_CHUNK_SIZE", 256 * 1024)
    yield client
    client.close()


def test_md5_stream_over_http_reuses_its_connections(over_http: Any) -> None:
    # Given a 12 MiB multipart object on a real HTTP endpoint, read in 48 ranges on 4 connections
    data = os.urandom(12 * MIB)
    multipart_upload(over_http, "big.fits.fz", data)
    obj = store.head(LANDING, "big.fits.fz")
    # When its md5 is streamed
    digest = store.stream_md5(obj, connections=4)
    # Then it is the md5 of the bytes, read over no more connections than ranges in flight (kept alive:
    # a connection per range would pay a new TCP and TLS handshake each)
    assert digest == hashlib.md5(data).hexdigest()
    opened = sum(pool.num_connections for pool in clients.http_pool().pools._container.values())
    assert 1 <= opened <= 4


def test_md5_stream_over_http_pinned_to_the_event_s_version_and_etag(over_http: Any) -> None:
    # Given a versioned multipart object, then a newer version of it
    data = os.urandom(6 * MIB)
    multipart_upload(over_http, "big.fits.fz", data)
    first = store.head(LANDING, "big.fits.fz")
    over_http.put_object(Bucket=LANDING, Key="big.fits.fz", Body=b"newer bytes")
    # When the first version's md5 is streamed; Then the version named is read, not the newest
    assert store.stream_md5(first, connections=2) == hashlib.md5(data).hexdigest()
    # And without a version id, the ETag pins it: the newer object is refused as changed (S3's 412)
    unversioned = store.ObjectInfo(LANDING, "big.fits.fz", first.size, first.etag, None, None)
    with pytest.raises(ObjectChangedError):
        store.stream_md5(unversioned, connections=2)
    # And a version deleted meanwhile is gone (S3's 404), not a fault of the system
    over_http.delete_object(Bucket=LANDING, Key="big.fits.fz", VersionId=first.version_id)
    with pytest.raises(ObjectGoneError):
        store.stream_md5(first, connections=2)


# -- copy -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "configured", "expected"),
    [
        (10 * MIB, 16 * MIB, 16 * MIB),  # the configured size when it fits in 10,000 parts
        (10 * MIB, 1024, 5 * MIB),  # never below S3's 5 MiB
        (100_000 * MIB, 5 * MIB, 10 * MIB),  # raised so 100,000 MiB fits in 10,000 parts
        (100_001 * MIB, 5 * MIB, -(-100_001 * MIB // 10_000)),  # rounded up, not down
        (5 * 1024**4, 16 * MIB, -(-5 * 1024**4 // 10_000)),  # S3's largest object: 5 TiB
        (10 * MIB, 8 * 1024**3, 5 * 1024**3),  # never above S3's 5 GiB
    ],
)
def test_part_size_fits_s3_limits(size: int, configured: int, expected: int) -> None:
    assert store.part_size(size, configured) == expected
    assert -(-size // store.part_size(size, configured)) <= store.MAX_PARTS


@pytest.mark.parametrize(
    ("size", "configured", "concurrency", "parts"),
    [
        (1000 * MIB, 5 * MIB, 16, 16),  # one round of 16 parallel copies
        (1000 * MIB, 100 * MIB, 16, 10),  # the configured size when it already fits one round
        (12 * MIB, 5 * MIB, 16, 3),  # never below 5 MiB, so fewer parts than connections
        (100_000 * MIB, 5 * MIB, 16, 20),  # two rounds: a part holds at most 5 GiB
    ],
)
def test_part_size_fits_one_round_of_parallel_copies(size: int, configured: int, concurrency: int, parts: int):
    assert -(-size // store.part_size(size, configured, concurrency)) == parts


@pytest.mark.parametrize(
    ("size", "threshold", "in_parts"),
    [
        (10 * MIB, 64 * MIB, False),
        (64 * MIB, 64 * MIB, False),
        (64 * MIB + 1, 64 * MIB, True),
        (5 * 1024**3 + 1, 100 * 1024**3, True),  # beyond CopyObject's 5 GiB whatever the threshold
    ],
)
def test_copy_path_is_chosen_by_size(size: int, threshold: int, in_parts: bool) -> None:
    assert store.copy_in_parts(size, threshold) is in_parts


@pytest.mark.parametrize("path", ["CopyObject", "UploadPartCopy"])
def test_landing_tags_never_reach_the_archive(s3, archive_api, monkeypatch, path: str) -> None:
    # Given a landing frame carrying tags (e.g. left by an earlier rejection), uploaded in parts
    data = frame(11 * MIB)
    multipart_upload(s3, NAME + ".fits.fz", data, Tagging="ingest-status=rejected&reason=bad_header")
    monkeypatch.setattr(store, "COPY_MULTIPART_THRESHOLD", PART if path == "UploadPartCopy" else 1024**3)
    monkeypatch.setattr(store, "COPY_PART_SIZE", PART)
    # When it is ingested through either copy path
    result = ingest_object(LANDING, NAME + ".fits.fz")
    # Then the archive copy holds the bytes and no tags
    assert result.status == "ingested"
    copied = s3.get_object(Bucket=ARCHIVE, Key=result.archive_key, VersionId=result.version_id)
    assert copied["Body"].read() == data
    assert ("-" in copied["ETag"]) is (path == "UploadPartCopy")
    tags = s3.get_object_tagging(Bucket=ARCHIVE, Key=result.archive_key, VersionId=result.version_id)
    assert tags["TagSet"] == []


def test_a_copy_needing_more_than_the_part_limit_uses_larger_parts(s3, archive_api, monkeypatch) -> None:
    # Given a 21 MiB frame, 5 MiB parts configured, and a part limit (10,000 on S3) lowered to 3 for the test
    data = frame(21 * MIB)
    multipart_upload(s3, NAME + ".fits.fz", data)
    monkeypatch.setattr(store, "MAX_PARTS", 3)
    monkeypatch.setattr(store, "COPY_MULTIPART_THRESHOLD", PART)
    monkeypatch.setattr(store, "COPY_PART_SIZE", PART)
    # When it is ingested (5 MiB parts would need 5)
    result = ingest_object(LANDING, NAME + ".fits.fz")
    # Then the copy is made of 3 larger parts and holds the bytes
    copied = s3.get_object(Bucket=ARCHIVE, Key=result.archive_key, VersionId=result.version_id)
    assert copied["ETag"].strip('"').endswith("-3")
    assert copied["Body"].read() == data
    assert result.md5 == hashlib.md5(data).hexdigest()


def test_a_part_copy_that_fails_leaves_no_upload(s3, monkeypatch) -> None:
    # Given a landing object named by its event, then deleted before its copy
    # (moto ignores CopySourceIfMatch on UploadPartCopy, so a replaced object cannot show this here)
    data = os.urandom(12 * MIB)
    multipart_upload(s3, "raw.fits.fz", data)
    obj = store.head(LANDING, "raw.fits.fz")
    s3.delete_object(Bucket=LANDING, Key="raw.fits.fz")
    monkeypatch.setattr(store, "COPY_MULTIPART_THRESHOLD", PART)
    monkeypatch.setattr(store, "COPY_PART_SIZE", PART)
    attrs = {"content_type": "image/fits", "content_disposition": "attachment", "storage_class": "STANDARD"}
    # When it is copied in parts; Then the copy fails as gone and the multipart upload is aborted
    with pytest.raises(ObjectGoneError):
        store.copy_to_archive(obj, ARCHIVE, "copy.fits.fz", **attrs)
    assert s3.list_multipart_uploads(Bucket=ARCHIVE).get("Uploads", []) == []
    assert s3.list_object_versions(Bucket=ARCHIVE).get("Versions", []) == []


def test_a_local_file_is_one_put_unless_s3_needs_parts(s3, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    # Given a 12 MiB local file (above the copy threshold)
    data = os.urandom(12 * MIB)
    attrs = {"content_type": "image/fits", "content_disposition": "attachment", "storage_class": "STANDARD"}
    monkeypatch.setattr(store, "COPY_MULTIPART_THRESHOLD", PART)
    monkeypatch.setattr(store, "COPY_PART_SIZE", PART)
    # When it is uploaded; Then it is one PUT (its ETag is its md5)
    version = store.upload_to_archive(io.BytesIO(data), len(data), ARCHIVE, "one.fits", **attrs)
    put = s3.get_object(Bucket=ARCHIVE, Key="one.fits", VersionId=version)
    assert put["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    # And above PutObject's limit (5 GiB on S3, lowered here) it is uploaded in parts holding the same bytes
    monkeypatch.setattr(store, "MAX_PUT_OBJECT_SIZE", 10 * MIB)
    version = store.upload_to_archive(io.BytesIO(data), len(data), ARCHIVE, "parts.fits", **attrs)
    parts = s3.get_object(Bucket=ARCHIVE, Key="parts.fits", VersionId=version)
    assert parts["ETag"].strip('"').endswith("-3")
    assert parts["Body"].read() == data
