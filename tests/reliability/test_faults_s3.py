"""S3 throttling (SlowDown) and 5xx on the ranged GETs, the copy and the landing delete.

Within a call, botocore's standard retry mode absorbs a passing fault: the engine's client is configured
for it, and one real retry is shown (a 5xx answered to the first attempt, before the request is sent).
A fault that outlasts every attempt of a call is answered in S3's place for the whole call (the
`s3_faults` fixture, botocore's before-call hook): the engine raises StorageUnavailableError, the record
is reported failed, and the next delivery succeeds with no partial state left behind.
"""

from __future__ import annotations

import threading
from typing import Any

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

OPERATIONS = ["GetObject", "CopyObject"]  # no HeadObject: the first ranged GET describes the object


def test_engine_client_retries_each_s3_call_in_standard_mode_up_to_the_configured_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lambda_ingest import clients

    # Given the default constants, and then S3_MAX_ATTEMPTS=3
    default = clients.s3().meta.config
    assert default.retries == {"mode": "standard", "total_max_attempts": clients.S3_MAX_ATTEMPTS}
    assert (default.connect_timeout, default.read_timeout) == (clients.S3_CONNECT_TIMEOUT, clients.S3_READ_TIMEOUT)
    monkeypatch.setattr(clients, "S3_MAX_ATTEMPTS", 3)
    clients.reset_clients()
    # Then the engine's S3 client is rebuilt with botocore's standard retries, three attempts in all
    assert clients.s3().meta.config.retries == {"mode": "standard", "total_max_attempts": 3}


class FirstAttemptFails:
    """Answers the first attempt of each `operation` call with S3's `code`, below botocore's retry loop
    (its before-send hook), so botocore's standard mode retries it. Only for reads: moto still executes the
    answered request, which changes nothing for a GET."""

    def __init__(self, operation: str, code: str) -> None:
        self.operation, self.code = operation, code
        self.attempts: list[int] = []
        self._lock = threading.Lock()

    def install(self) -> None:
        from lambda_ingest import clients

        events = clients.s3().meta.events
        events.register(f"before-send.s3.{self.operation}", self.before_send, unique_id="first-attempt-fails")

    def before_send(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        from tests.reliability.support import S3_ERRORS, s3_error_xml

        retry_header = request.headers.get("amz-sdk-request", "attempt=1")  # botocore's "attempt=N; max=M"
        retry_header = retry_header.decode() if isinstance(retry_header, bytes) else retry_header
        attempt = int(retry_header.split(";")[0].split("=")[1])
        with self._lock:
            self.attempts.append(attempt)
        if attempt > 1:
            return None
        status, message = S3_ERRORS[self.code]
        body = b"" if request.method == "HEAD" else s3_error_xml(self.code, message)
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


# Server errors only: botocore waits up to 50 ms before retrying them (1 s for throttling codes).
# GetObject: the one read every ingest makes (its header blocks), with or without a HEAD before it.
@pytest.mark.parametrize("code", ["InternalError", "ServiceUnavailable"])
def test_s3_error_is_retried_within_the_call_and_the_ingest_succeeds(
    s3, archive_api, queue, context, code: str
) -> None:
    # Given a frame, and S3 answering `code` to the first attempt of every GetObject call
    files = frame_files(1)
    upload(s3, files)
    fault = FirstAttemptFails("GetObject", code)
    fault.install()
    # When the notification is delivered
    invocations = queue.deliver_all(handler, context)
    # Then botocore retried inside the call, the record did not fail, and the frame is registered once
    assert fault.attempts[:2] == [1, 2]
    assert [i.failed for i in invocations] == [[]]
    assert_exactly_once(s3, archive_api, files)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_s3_error_past_the_attempts_is_transient_and_leaves_no_partial_state(
    s3, archive_api, queue, context, s3_faults, operation: str
) -> None:
    # Given two frames, and S3 throttling every attempt of the first `operation` call
    files = frame_files(2)
    upload(s3, files)
    s3_faults.fail(operation, 1, "SlowDown")
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
    s3_faults.fail("DeleteObject", 1, "SlowDown")
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
    s3_faults.fail("ListObjectVersions", 1, "SlowDown")
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
    s3_faults.fail("HeadObject", 1)
    # When the engine HEADs an object, Then the call fails as transient, once
    with pytest.raises(StorageUnavailableError, match=r"S3 answered 503"):
        store.head(ARCHIVE, "probe")
    assert s3_faults.calls["HeadObject"] == 1 and s3_faults.pending("HeadObject") == 0
    # And the test's own client (not hooked) still sees the object
    assert s3.head_object(Bucket=ARCHIVE, Key="probe")["ContentLength"] == 1
