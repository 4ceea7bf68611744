"""The Science Archive failing for a while, then recovering: every frame ends registered exactly once.

Through the real path: moto S3 -> SQS (with a DLQ after 5 receives) -> handler -> the archive emulator,
whose fault injection answers 5xx/429/408, delays past the client's read timeout, resets connections, or
stops listening. Failed records are redelivered at once (SQS would wait for the visibility timeout).
"""

from __future__ import annotations

import pytest

from lambda_ingest.handler import handler
from tests.reliability.support import assert_exactly_once, frame_files, upload, wait_until

STATUS_FAULTS = [500, 502, 503, 504, 429, 408]


@pytest.mark.parametrize("status", STATUS_FAULTS, ids=[str(s) for s in STATUS_FAULTS])
def test_archive_status_fault_then_recovery_registers_every_frame_exactly_once(
    s3, archive_api, queue, context, status: int
) -> None:
    # Given three frames in the landing bucket, and an archive answering `status` to its next two
    # lookups and its next two registrations
    files = frame_files(3)
    upload(s3, files)
    archive_api.inject(status=status, count=2, method="GET")
    archive_api.inject(status=status, count=2, method="POST")
    # When SQS delivers the notifications, and redelivers what the handler reports failed
    invocations = queue.deliver_all(handler, context)
    # Then the failures were reported (not swallowed), every fault was met, and after redelivery every
    # frame is registered exactly once, downloadable, with no orphan version and nothing dead-lettered
    assert invocations[0].failed
    assert archive_api.pending_faults == 0
    assert_exactly_once(s3, archive_api, files)
    assert queue.dead_letters() == []


def test_connection_resets_then_recovery_registers_every_frame_exactly_once(s3, archive_api, queue, context) -> None:
    # Given an archive that drops the connection (TCP reset, no answer) on two lookups and two registrations
    files = frame_files(3)
    upload(s3, files)
    archive_api.inject(reset=True, count=2, method="GET")
    archive_api.inject(reset=True, count=2, method="POST")
    # When the notifications are delivered and redelivered
    invocations = queue.deliver_all(handler, context)
    # Then every frame ends registered exactly once
    assert invocations[0].failed
    assert archive_api.pending_faults == 0
    assert_exactly_once(s3, archive_api, files)
    assert queue.dead_letters() == []


def test_refused_connections_for_a_while_then_recovery(s3, archive_api, queue, context) -> None:
    # Given three frames, and an archive that is not listening at all
    files = frame_files(3)
    upload(s3, files)
    with archive_api.refusing_connections():
        # When the batch is delivered while the archive refuses connections
        first = queue.deliver_once(handler, context)
        # Then every record is reported failed, nothing is copied, the landing objects are untouched
        assert first is not None and sorted(first.failed) == sorted(first.message_ids)
        assert s3.list_object_versions(Bucket="archive-bucket").get("Versions", []) == []
    # When the archive is back and SQS redelivers
    queue.deliver_all(handler, context)
    # Then every frame is registered exactly once
    assert_exactly_once(s3, archive_api, files)


@pytest.fixture
def archive_calls(monkeypatch) -> list[str]:
    """Every request the engine sends to the archive (method and path), in order."""
    from lambda_ingest.archive import ArchiveClient

    sent: list[str] = []
    original = ArchiveClient._call

    def spy(self, method, path, **kwargs):
        sent.append(f"{method} {path}")
        return original(self, method, path, **kwargs)

    monkeypatch.setattr(ArchiveClient, "_call", spy)
    return sent


@pytest.fixture
def short_read_timeout(archive_api, monkeypatch) -> float:
    from lambda_ingest.settings import reset_settings

    monkeypatch.setenv("HTTP_READ_TIMEOUT", "0.2")
    reset_settings()
    return 0.2


def test_archive_timing_out_then_recovering_registers_every_frame_exactly_once(
    s3, archive_api, queue, context, short_read_timeout, archive_calls
) -> None:
    # Given three frames, and an archive that answers its next lookup and next two registrations only after
    # the client's read timeout: each of those requests still completes on the archive after the client
    # gave up (a registration may be committed although the ingester saw a timeout)
    files = frame_files(3)
    upload(s3, files)
    archive_api.inject(delay=0.5, count=1, method="GET")
    archive_api.inject(delay=0.5, count=2, method="POST")
    # When SQS delivers and redelivers, each redelivery after the archive finished what it was doing
    # (the visibility timeout, six function timeouts, is far longer than any request)
    invocations = []
    while (invocation := queue.deliver_once(handler, context)) is not None:
        invocations.append(invocation)
        wait_until(lambda: len(archive_api.requests_seen) >= len(archive_calls), 3, "the archive to finish")
    # Then timeouts were reported as failures, and every frame ends registered exactly once: a registration
    # committed after the timeout is found by the redelivery and its archive version was kept
    assert invocations[0].failed
    assert archive_api.pending_faults == 0
    assert_exactly_once(s3, archive_api, files)
    assert queue.dead_letters() == []


def test_redelivery_overtaking_a_late_registration_still_converges(
    s3, archive_api, queue, context, short_read_timeout, archive_calls
) -> None:
    # Given a frame whose registration reaches the archive only after the client's timeout ...
    files = frame_files(1)
    upload(s3, files)
    archive_api.inject(delay=0.6, count=1, method="POST")
    first = queue.deliver_once(handler, context)
    assert first is not None and first.failed
    # ... and a redelivery that runs while that late registration is still in flight
    queue.deliver_all(handler, context)
    # When the late registration finally reaches the archive (and is refused as a duplicate md5)
    wait_until(lambda: len(archive_api.requests_seen) >= len(archive_calls), 3, "the late registration")
    # Then there is exactly one registered version, and it is the only archive version
    assert_exactly_once(s3, archive_api, files)


def test_archive_500_after_its_commit_loses_nothing(s3, archive_api, queue, context) -> None:
    # Given an archive that commits the frame and then fails rendering its answer (a 500 with the frame
    # saved, as the real archive does when its response serialisation crashes), once
    files = frame_files(2)
    upload(s3, files)
    archive_api.inject(status=500, after=True, method="POST", path_prefix="frames/")
    # When the notifications are delivered and the failed record redelivered
    invocations = queue.deliver_all(handler, context)
    # Then the 500 was a transient failure, and the registered version still holds the frame's bytes
    assert [len(i.failed) for i in invocations] == [1, 0]
    assert_exactly_once(s3, archive_api, files)


@pytest.mark.parametrize(("status", "copy_kept"), [(503, False), (500, True)], ids=["503-not-handled", "500-maybe"])
def test_a_failed_registration_keeps_the_copy_only_when_the_archive_may_have_registered_it(
    s3, archive_api, queue, context, status: int, copy_kept: bool
) -> None:
    # Given a frame whose registration fails once with `status`
    files = frame_files(1)
    upload(s3, files)
    archive_api.inject(status=status, count=1, method="POST")
    # When it is delivered once
    first = queue.deliver_once(handler, context)
    # Then the record failed; the archive copy is deleted at once when the archive says it did not handle the
    # request (503/429/408), kept when it may have (500/502/504, timeouts, dropped connections) ...
    assert first is not None and first.failed
    versions = s3.list_object_versions(Bucket="archive-bucket").get("Versions", [])
    assert len(versions) == (1 if copy_kept else 0)
    # ... and either way the redelivery leaves exactly the registered version
    queue.deliver_all(handler, context)
    assert_exactly_once(s3, archive_api, files)


def test_an_outage_longer_than_the_redrive_policy_dead_letters_and_loses_nothing(
    s3, archive_api, queue, context
) -> None:
    from tests.reliability.support import MAX_RECEIVE_COUNT, landing_keys

    # Given a frame, and an archive down for longer than the queue's redrive policy allows
    files = frame_files(1)
    [key] = upload(s3, files)
    archive_api.inject(status=503, count=100, method=None)
    # When SQS delivers it until the redrive policy gives up
    invocations = queue.deliver_all(handler, context)
    # Then it was tried maxReceiveCount times, then moved to the DLQ; the landing object is untouched
    assert len(invocations) == MAX_RECEIVE_COUNT and all(i.failed for i in invocations)
    [dead] = queue.dead_letters()
    assert landing_keys(s3) == [key]
    assert s3.get_object_tagging(Bucket="landing-bucket", Key=key)["TagSet"] == []
    assert s3.list_object_versions(Bucket="archive-bucket").get("Versions", []) == []
    # When the archive is back and the DLQ is redriven
    archive_api.clear_faults()
    response = handler(queue.event([dead]), context)
    # Then the frame is registered exactly once
    assert response == {"batchItemFailures": []}
    assert_exactly_once(s3, archive_api, files)
