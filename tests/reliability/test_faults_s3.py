"""S3 throttling (SlowDown) and 5xx on HEAD, ranged GET, copy and the landing delete.

S3 errors are injected with botocore's `before-send` hook on the engine's own client, so botocore's
standard retry mode (S3_MAX_ATTEMPTS=5) sees exactly what S3 would send; its backoff is made instant.
Within the attempts, a call is retried and succeeds; past them, the engine raises StorageUnavailableError,
the record is reported failed, and the next delivery succeeds with no partial state left behind.
"""

from __future__ import annotations

import pytest

from lambda_ingest.handler import handler
from tests.conftest import ARCHIVE, LANDING
from tests.reliability.support import (
    archive_object_versions,
    assert_exactly_once,
    frame_files,
    landing_keys,
    upload,
)

MAX_ATTEMPTS = 5  # clients.S3_MAX_ATTEMPTS
OPERATIONS = ["HeadObject", "GetObject", "CopyObject"]
CODES = ["SlowDown", "InternalError", "ServiceUnavailable"]


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_s3_error_is_retried_within_the_call_and_the_ingest_succeeds(
    s3, archive_api, queue, context, s3_faults, operation: str, code: str
) -> None:
    # Given a frame, and S3 answering `code` to the next MAX_ATTEMPTS - 1 `operation` requests
    files = frame_files(1)
    upload(s3, files)
    s3_faults.fail(operation, MAX_ATTEMPTS - 1, code)
    # When the notification is delivered
    invocations = queue.deliver_all(handler, context)
    # Then botocore retried inside the one call, the record did not fail, and the frame is registered once
    assert s3_faults.pending(operation) == 0
    assert s3_faults.attempts[operation] >= MAX_ATTEMPTS
    assert [i.failed for i in invocations] == [[]]
    assert_exactly_once(s3, archive_api, files)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_s3_error_past_the_attempts_is_transient_and_leaves_no_partial_state(
    s3, archive_api, queue, context, s3_faults, operation: str
) -> None:
    # Given two frames, and S3 throttling every attempt of the first `operation` call
    files = frame_files(2)
    upload(s3, files)
    s3_faults.fail(operation, MAX_ATTEMPTS, "SlowDown")
    # When the batch is delivered once
    first = queue.deliver_once(handler, context)
    # Then only the throttled record is reported failed (for redelivery) ...
    assert first is not None and len(first.failed) == 1
    assert s3_faults.pending(operation) == 0
    # ... its landing object is untouched (no tag) and neither the archive bucket nor the archive holds it
    [failed_key] = landing_keys(s3)
    assert _landing_tags(s3) == {failed_key: {}}
    failed_basename = failed_key.split(".", 1)[0]
    assert failed_basename not in {v["basename"] for v in archive_api.versions()}
    assert not [v for v in archive_object_versions(s3) if failed_basename in v["Key"]]
    # When SQS redelivers it
    queue.deliver_all(handler, context)
    # Then both frames are registered exactly once
    assert_exactly_once(s3, archive_api, files)


def test_landing_delete_failing_after_registration_converges_on_redelivery(
    s3, archive_api, queue, context, s3_faults
) -> None:
    # Given a frame, and S3 throttling every attempt of the landing delete that follows its registration
    files = frame_files(1)
    upload(s3, files)
    s3_faults.fail("DeleteObject", MAX_ATTEMPTS, "SlowDown")
    # When the notification is delivered
    first = queue.deliver_once(handler, context)
    # Then the record is reported failed although the frame is registered, and the landing object is kept
    assert first is not None and first.failed
    assert len(archive_api.versions()) == 1
    assert len(landing_keys(s3)) == 1
    # When SQS redelivers it, the redelivery finds the registration (already ingested) and removes the object
    queue.deliver_all(handler, context)
    assert_exactly_once(s3, archive_api, files)


def test_orphan_sweep_failing_never_fails_a_registered_ingest(s3, archive_api, queue, context, s3_faults) -> None:
    # Given a frame, and S3 throttling every attempt to list the archive key's versions (the orphan sweep,
    # housekeeping after the registration succeeded)
    files = frame_files(1)
    upload(s3, files)
    s3_faults.fail("ListObjectVersions", MAX_ATTEMPTS, "SlowDown")
    # When the notification is delivered
    invocations = queue.deliver_all(handler, context)
    # Then the ingest succeeded at once: the frame is registered, the landing object removed
    assert [i.failed for i in invocations] == [[]]
    assert_exactly_once(s3, archive_api, files)


def _landing_tags(s3) -> dict[str, dict[str, str]]:
    return {
        key: {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=LANDING, Key=key)["TagSet"]}
        for key in landing_keys(s3)
    }


def test_fault_hook_reaches_the_engine_client_not_moto(s3, archive_api, s3_faults) -> None:
    # Given a SlowDown on every HEAD attempt of the engine's client
    from lambda_ingest import store
    from lambda_ingest.errors import StorageUnavailableError

    s3.put_object(Bucket=ARCHIVE, Key="probe", Body=b"x")
    s3_faults.fail("HeadObject", MAX_ATTEMPTS)
    # When the engine HEADs an object, Then it gives up after exactly MAX_ATTEMPTS attempts, as transient
    with pytest.raises(StorageUnavailableError, match=r"SlowDown|503"):
        store.head(ARCHIVE, "probe")
    assert s3_faults.attempts["HeadObject"] == MAX_ATTEMPTS
    # And the test's own client (not hooked) still sees the object
    assert s3.head_object(Bucket=ARCHIVE, Key="probe")["ContentLength"] == 1
