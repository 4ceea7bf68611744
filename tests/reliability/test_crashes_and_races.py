"""Crashes at each step boundary, objects gone or overwritten before processing, and concurrent arrivals.

A crash is a Lambda killed mid-flight (timeout, out of memory): simulated by a BaseException raised from
the step that would run next, with the engine's own cleanup disabled too, so nothing runs after it. The
whole batch then comes back from SQS, as it does after a failed invocation.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lambda_ingest.handler import handler
from tests.conftest import ARCHIVE, LANDING
from tests.reliability.support import (
    Crash,
    archive_object_versions,
    assert_exactly_once,
    frame_files,
    landing_keys,
    md5,
    upload,
)


def crash(*args: Any, **kwargs: Any) -> None:
    raise Crash()


# --------------------------------------------------------------------------------------------------------
# Crashes at step boundaries
# --------------------------------------------------------------------------------------------------------


def test_crash_after_copy_before_post_converges_to_one_version_without_orphan(
    s3, archive_api, queue, context, monkeypatch
) -> None:
    from lambda_ingest import ingest
    from lambda_ingest.archive import ArchiveClient

    # Given a frame whose first ingest is killed after the server-side copy, before the POST
    files = frame_files(1)
    upload(s3, files)
    with monkeypatch.context() as m:
        m.setattr(ArchiveClient, "post", crash)
        m.setattr(ingest, "_discard_copy", crash)  # a killed Lambda cleans nothing up
        first = queue.deliver_once(handler, context)
    assert first is not None and first.crashed
    assert len(archive_object_versions(s3)) == 1  # the crashed attempt's copy
    assert archive_api.versions() == []
    # When SQS redelivers the batch
    queue.deliver_all(handler, context)
    # Then exactly one version is registered and it is the only archive version (the orphan was swept)
    assert_exactly_once(s3, archive_api, files)


def test_crash_after_post_before_landing_delete_converges(s3, archive_api, queue, context, monkeypatch) -> None:
    from lambda_ingest import store

    # Given a frame whose first ingest is killed after its registration, before the landing object's removal
    files = frame_files(1)
    upload(s3, files)
    with monkeypatch.context() as m:
        m.setattr(store, "delete_landing", crash)
        first = queue.deliver_once(handler, context)
    assert first is not None and first.crashed
    assert len(archive_api.versions()) == 1 and len(landing_keys(s3)) == 1
    # When SQS redelivers the batch
    queue.deliver_all(handler, context)
    # Then the redelivery finds the registration (already ingested), writes nothing and removes the object
    assert_exactly_once(s3, archive_api, files)
    assert archive_api.requests_seen.count(("POST", "/frames/", 201)) == 1


def test_crash_mid_batch_redelivers_the_whole_batch_and_converges(s3, archive_api, queue, context, monkeypatch) -> None:
    from lambda_ingest import ingest
    from lambda_ingest.archive import ArchiveClient

    # Given three frames in one batch, and a Lambda killed during the second frame's registration
    files = frame_files(3)
    upload(s3, files)
    original_post = ArchiveClient.post
    posts = iter(range(100))

    def post_then_crash(self: Any, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        if next(posts) == 1:
            raise Crash()
        return original_post(self, endpoint, payload)

    with monkeypatch.context() as m:
        m.setattr(ArchiveClient, "post", post_then_crash)
        m.setattr(ingest, "_discard_copy", crash)
        first = queue.deliver_once(handler, context)
    assert first is not None and first.crashed and len(first.message_ids) == 3
    # When the whole batch comes back (the first frame's landing object is already gone)
    invocations = queue.deliver_all(handler, context)
    # Then nothing is retried further, and every frame is registered exactly once
    assert [i.failed for i in invocations] == [[]]
    assert_exactly_once(s3, archive_api, files)


# --------------------------------------------------------------------------------------------------------
# The landing object deleted or overwritten before processing
# --------------------------------------------------------------------------------------------------------


def test_landing_object_deleted_before_processing_is_skipped_once_with_a_clear_log(
    s3, archive_api, queue, context, s3_faults, logs
) -> None:
    # Given a frame whose notification is queued, then the object deleted before the handler runs
    files = frame_files(1)
    [key] = upload(s3, files)
    s3.delete_object(Bucket=LANDING, Key=key)
    # When the notification is delivered
    invocations = queue.deliver_all(handler, context)
    # Then it is not reported failed (no retry storm): one invocation, one GET (no HEAD), nothing dead-lettered
    assert [i.failed for i in invocations] == [[]]
    assert s3_faults.attempts["GetObject"] == 1 and s3_faults.attempts["HeadObject"] == 0
    assert queue.depth() == 0 and queue.dead_letters() == []
    # And one warning line names the object, the outcome and why
    [line] = logs.with_message("skipped")
    assert line["level"] == "WARNING"
    assert line["outcome"] == "skipped"
    assert line["object"] == f"s3://{LANDING}/{key}"
    assert "no such object" in line["reason"]
    assert archive_api.versions() == [] and archive_object_versions(s3) == []


def test_overwritten_before_processing_ingests_only_the_newer_upload_through_its_own_event(
    s3, archive_api, queue, context, logs
) -> None:
    from lambda_ingest.local.synthetic import lco_header, make_frame_bytes

    # Given a frame uploaded, then overwritten under the same key (different header and bytes) before either
    # notification is processed (an unversioned landing bucket: the event names the ETag)
    [(basename, ext)] = frame_files(1)
    old = make_frame_bytes(basename, ext, data_bytes=4096, seed=1, header=lco_header(basename, OBJECT="old"))
    new = make_frame_bytes(basename, ext, data_bytes=4096, seed=2, header=lco_header(basename, OBJECT="new"))
    s3.put_object(Bucket=LANDING, Key=basename + ext, Body=old)
    s3.put_object(Bucket=LANDING, Key=basename + ext, Body=new)
    # When both notifications are delivered
    invocations = queue.deliver_all(handler, context)
    # Then neither is retried; the first event's outcome says why it was not ingested ...
    assert all(i.failed == [] for i in invocations)
    [skipped] = logs.with_message("skipped")
    assert skipped["outcome"] == "skipped" and "overwritten after the event" in skipped["reason"]
    # ... and the archive holds exactly the newer upload, headers and bytes alike: never a mix
    assert_exactly_once(s3, archive_api, {(basename, ext): new})
    [frame] = archive_api.frames()
    assert frame["target_name"] == "new"


OVERWRITE_MOMENTS = ["before_first_read", "before_copy"]


@pytest.mark.parametrize("moment", OVERWRITE_MOMENTS)
def test_overwritten_during_processing_is_never_mixed(
    s3, archive_api, queue, context, s3_faults, monkeypatch, logs, moment: str
) -> None:
    from lambda_ingest import store
    from lambda_ingest.local.synthetic import lco_header, make_frame_bytes

    # Given a frame whose landing object is overwritten (other header, other bytes) while it is processed:
    # after the event, before the first ranged GET (which replaced the HEAD) / before the server-side copy
    [(basename, ext)] = frame_files(1)
    old = make_frame_bytes(basename, ext, data_bytes=4096, seed=1, header=lco_header(basename, OBJECT="old"))
    new = make_frame_bytes(basename, ext, data_bytes=4096, seed=2, header=lco_header(basename, OBJECT="new"))
    s3.put_object(Bucket=LANDING, Key=basename + ext, Body=old)
    s3_faults.enforce_copy_source_if_match(s3)  # as S3 does; moto ignores CopySourceIfMatch
    step = "open_landing" if moment == "before_first_read" else "copy_to_archive"
    original = getattr(store, step)
    overwrite = iter([True])

    def overwrite_then_step(*args: Any, **kwargs: Any) -> Any:
        if next(overwrite, False):
            s3.put_object(Bucket=LANDING, Key=basename + ext, Body=new)  # its own notification is queued
        return original(*args, **kwargs)

    monkeypatch.setattr(store, step, overwrite_then_step)
    # When the notifications are delivered
    invocations = queue.deliver_all(handler, context)
    # Then the read or copy pinned to the event's ETag was refused: the first ingest says why, is not retried ...
    assert all(i.failed == [] for i in invocations)
    [skipped] = logs.with_message("skipped")
    why = "overwritten after the event" if moment == "before_first_read" else "changed since the event"
    assert why in skipped["reason"]
    # ... and the newer upload alone is registered, with its own headers and bytes
    assert_exactly_once(s3, archive_api, {(basename, ext): new})
    assert archive_api.frames()[0]["target_name"] == "new"


def test_overwritten_after_registration_keeps_the_newer_upload(
    s3, archive_api, queue, context, monkeypatch, logs
) -> None:
    from lambda_ingest.archive import ArchiveClient
    from lambda_ingest.local.synthetic import lco_header, make_frame_bytes

    # Given a frame overwritten after its registration, before its landing object is removed
    [(basename, ext)] = frame_files(1)
    old = make_frame_bytes(basename, ext, data_bytes=4096, seed=1, header=lco_header(basename, OBJECT="old"))
    new = make_frame_bytes(basename, ext, data_bytes=4096, seed=2, header=lco_header(basename, OBJECT="new"))
    s3.put_object(Bucket=LANDING, Key=basename + ext, Body=old)
    original = ArchiveClient.post
    overwrite = iter([True])

    def post_then_overwrite(self: Any, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = original(self, endpoint, payload)
        if next(overwrite, False):
            s3.put_object(Bucket=LANDING, Key=basename + ext, Body=new)
        return body

    monkeypatch.setattr(ArchiveClient, "post", post_then_overwrite)
    # When the notifications are delivered
    invocations = queue.deliver_all(handler, context)
    # Then the conditional delete left the newer upload in place (and said so), its own event ingested it:
    # both uploads are registered, each exactly once, as two versions of the frame
    assert all(i.failed == [] for i in invocations)
    [kept] = logs.with_message("landing object replaced during the ingest; kept for its own event")
    assert kept["object"] == f"s3://{LANDING}/{basename}{ext}"
    assert_exactly_once(s3, archive_api, [(basename, ext, old), (basename, ext, new)])


def test_versioned_landing_bucket_ingests_the_version_named_by_each_event(s3, archive_api, queue, context) -> None:
    from lambda_ingest.local.synthetic import lco_header, make_frame_bytes

    # Given a versioned landing bucket and one key uploaded twice with different bytes
    s3.put_bucket_versioning(Bucket=LANDING, VersioningConfiguration={"Status": "Enabled"})
    [(basename, ext)] = frame_files(1)
    first = make_frame_bytes(basename, ext, data_bytes=4096, seed=1, header=lco_header(basename, OBJECT="first"))
    second = make_frame_bytes(basename, ext, data_bytes=4096, seed=2, header=lco_header(basename, OBJECT="second"))
    puts = [s3.put_object(Bucket=LANDING, Key=basename + ext, Body=body) for body in (first, second)]
    # When both notifications are delivered, each naming its version as S3 does (moto leaves versionId out)
    version_of = {p["ETag"].strip('"'): p["VersionId"] for p in puts}
    messages = queue.receive()
    for message in messages:
        body = json.loads(message["Body"])
        obj = body["Records"][0]["s3"]["object"]
        obj["versionId"] = version_of[obj["eTag"]]
        message["Body"] = json.dumps(body)
    assert handler(queue.event(messages), context) == {"batchItemFailures": []}
    # Then each event ingested exactly the version it named: two versions of one frame, each holding its own
    # bytes, and both landing versions removed
    assert_exactly_once(s3, archive_api, [(basename, ext, first), (basename, ext, second)])
    assert s3.list_object_versions(Bucket=LANDING).get("Versions", []) == []


# --------------------------------------------------------------------------------------------------------
# Concurrent arrivals
# --------------------------------------------------------------------------------------------------------


@pytest.fixture
def lookups_meet(monkeypatch) -> threading.Barrier:
    """Two ingests wait for each other right after their duplicate lookup, so both copy and both POST."""
    from lambda_ingest.archive import ArchiveClient

    barrier = threading.Barrier(2, timeout=5)
    original = ArchiveClient.find_version
    calls = iter(range(2))

    def find_then_wait(self: Any, basename: str, md5_: str) -> Any:
        found = original(self, basename, md5_)
        if next(calls, None) is not None:
            barrier.wait()
        return found

    monkeypatch.setattr(ArchiveClient, "find_version", find_then_wait)
    return barrier


@pytest.fixture
def copies_meet(monkeypatch) -> threading.Barrier:
    """Two ingests also wait for each other right after their archive copy: the lookup runs beside the first
    read, so without this one ingest may register and remove the landing object before the other copies
    (which then finds it gone: skipped, also exactly once, but not the race under test)."""
    from lambda_ingest import store

    barrier = threading.Barrier(2, timeout=5)
    original = store.copy_to_archive
    calls = iter(range(2))

    def copy_then_wait(*args: Any, **kwargs: Any) -> Any:
        version = original(*args, **kwargs)
        if next(calls, None) is not None:
            barrier.wait()
        return version

    monkeypatch.setattr(store, "copy_to_archive", copy_then_wait)
    return barrier


def process_concurrently(bodies: list[str]) -> list[str]:
    """Run each message body's records at the same time, one thread each, as concurrent Lambda sandboxes do.

    The engine below the handler is what runs per record; the handler's Powertools BatchProcessor is one
    per sandbox (module state), so threads in one process must not share it. Returns the outcomes.
    """
    from lambda_ingest import events
    from lambda_ingest.outcomes import processor

    def run(body: str) -> list[str]:
        return [processor().process(ref)["outcome"] for ref in events.from_message_body(body)]

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return [o for outcomes in pool.map(run, bodies) for o in outcomes]


def deliver_concurrently(queue: Any, n: int = 2) -> list[str]:
    messages = queue.receive(limit=n)
    assert len(messages) == n
    outcomes = process_concurrently([m["Body"] for m in messages])
    for message in messages:
        queue.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
    return outcomes


def test_two_different_files_with_one_basename_arriving_concurrently_become_two_versions(
    s3, archive_api, queue, context, lookups_meet
) -> None:
    from lambda_ingest.local.synthetic import make_frame_bytes

    # Given two different files with the same name under two prefixes, processed at the same time
    [(basename, ext)] = frame_files(1)
    one = make_frame_bytes(basename, ext, data_bytes=4096, seed=1)
    two = make_frame_bytes(basename, ext, data_bytes=4096, seed=2)
    s3.put_object(Bucket=LANDING, Key=f"night-a/{basename}{ext}", Body=one)
    s3.put_object(Bucket=LANDING, Key=f"night-b/{basename}{ext}", Body=two)
    # When both are delivered concurrently
    outcomes = deliver_concurrently(queue)
    # Then both are registered, as two versions of one frame at one archive key; neither ingest removed the
    # other's archive version
    assert outcomes == ["ingested", "ingested"]
    assert_exactly_once(s3, archive_api, [(basename, ext, one), (basename, ext, two)])
    assert len(archive_api.frames()) == 1
    assert len({v["Key"] for v in archive_object_versions(s3)}) == 1


def test_fits_and_fits_fz_of_one_basename_concurrently_become_two_versions_of_one_frame(
    s3, archive_api, queue, context, lookups_meet
) -> None:
    from lambda_ingest.local.synthetic import make_frame_bytes

    # Given the .fits and the .fits.fz of one basename, processed at the same time
    [(basename, _)] = frame_files(1)
    plain = make_frame_bytes(basename, ".fits", data_bytes=4096, seed=1)
    packed = make_frame_bytes(basename, ".fits.fz", data_bytes=4096, seed=1)
    s3.put_object(Bucket=LANDING, Key=basename + ".fits", Body=plain)
    s3.put_object(Bucket=LANDING, Key=basename + ".fits.fz", Body=packed)
    # When both are delivered concurrently
    outcomes = deliver_concurrently(queue)
    # Then one frame holds two versions, one per extension, each at its own archive key
    assert outcomes == ["ingested", "ingested"]
    assert_exactly_once(s3, archive_api, {(basename, ".fits"): plain, (basename, ".fits.fz"): packed})
    [frame] = archive_api.frames()
    assert sorted(v["extension"] for v in frame["version_set"]) == [".fits", ".fits.fz"]
    assert sorted(v["Key"].rsplit("/", 1)[1] for v in archive_object_versions(s3)) == [
        basename + ".fits",
        basename + ".fits.fz",
    ]


def test_byte_identical_files_under_two_names_register_the_bytes_once(s3, archive_api, queue, context, logs) -> None:
    from lambda_ingest.local.synthetic import frame_name

    # Given the same bytes uploaded under two names
    [((basename, ext), data)] = frame_files(1).items()
    other = frame_name(seq=999, ext="")
    s3.put_object(Bucket=LANDING, Key=basename + ext, Body=data)
    s3.put_object(Bucket=LANDING, Key=other + ext, Body=data)
    # When both are delivered
    invocations = queue.deliver_all(handler, context)
    # Then the bytes are registered once (the archive's md5 is unique), under the first name; the second is
    # "already ingested": logged as such, not retried, and its copy removed (no orphan)
    assert all(i.failed == [] for i in invocations)
    assert_exactly_once(s3, archive_api, {(basename, ext): data})
    [duplicate] = logs.with_message("already_ingested")
    assert duplicate["key"] == other + ext and duplicate["md5"] == md5(data)


def test_byte_identical_files_under_two_names_concurrently_register_the_bytes_once(
    s3, archive_api, queue, context, lookups_meet
) -> None:
    from lambda_ingest.local.synthetic import frame_name

    # Given the same bytes under two names, both past their duplicate lookup before either registers
    [((basename, ext), data)] = frame_files(1).items()
    other = frame_name(seq=999, ext="")
    s3.put_object(Bucket=LANDING, Key=basename + ext, Body=data)
    s3.put_object(Bucket=LANDING, Key=other + ext, Body=data)
    # When both are delivered concurrently
    outcomes = deliver_concurrently(queue)
    # Then exactly one name holds the bytes (whichever registered first), and no copy is left orphaned
    assert sorted(outcomes) == ["already_ingested", "ingested"]
    [version] = archive_api.versions()
    assert version["basename"] in (basename, other)
    assert_exactly_once(s3, archive_api, {(version["basename"], ext): data})


def test_duplicate_delivery_of_one_object_concurrently_without_idempotency_table(
    s3, archive_api, queue, context, lookups_meet, copies_meet
) -> None:
    # Given one frame whose notification is delivered twice at the same moment (SQS is at-least-once), with
    # no idempotency table: both deliveries pass the duplicate lookup and both copy
    files = frame_files(1)
    upload(s3, files)
    [message] = queue.receive(limit=1)
    # When both run concurrently
    outcomes = process_concurrently([message["Body"]] * 2)
    queue.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
    # Then the archive's unique md5 lets one register; the other's copy is removed: one version, no orphan
    assert sorted(outcomes) == ["already_ingested", "ingested"]
    assert_exactly_once(s3, archive_api, files)
    assert s3.list_object_versions(Bucket=ARCHIVE).get("DeleteMarkers") is None
