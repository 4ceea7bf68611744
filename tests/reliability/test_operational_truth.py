"""Issue 10, "operational truth": a fault of the system is retried and alarmed, never blamed on a file.

Each test names the finding of issue 10 it guards. Everything runs against the local stack: moto S3/SQS/
Secrets Manager/DynamoDB in-process, the archive emulator over loopback HTTP, the handler invoked as
Lambda's SQS event source mapping does (redelivering what it reports failed, DLQ after 5 receives).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from lambda_ingest.clients import new_session
from lambda_ingest.context import LocalContext
from lambda_ingest.handler import handler, record_budget_ms
from lambda_ingest.local.synthetic import thumbnail_metadata
from tests.conftest import ADMIN_TOKEN, ARCHIVE, LANDING
from tests.reliability.support import (
    MAX_RECEIVE_COUNT,
    archive_object_versions,
    assert_exactly_once,
    frame_files,
    landing_keys,
    upload,
)


def emf(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The EMF metric lines printed since the last call."""
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]


def counts(metrics: list[dict[str, Any]], name: str) -> dict[str, int]:
    """Metric `name` summed by its `reason` dimension ("" when it has none)."""
    out: dict[str, int] = {}
    for m in metrics:
        if name in m:
            values = m[name] if isinstance(m[name], list) else [m[name]]
            out[m.get("reason", "")] = out.get(m.get("reason", ""), 0) + int(sum(values))
    return out


def landing_tags(s3: Any) -> dict[str, list[dict[str, str]]]:
    return {key: s3.get_object_tagging(Bucket=LANDING, Key=key)["TagSet"] for key in landing_keys(s3)}


def set_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    from lambda_ingest.settings import reset_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()


def assert_dead_lettered_untouched(s3: Any, queue: Any, invocations: list[Any], keys: list[str]) -> list[Any]:
    """Every delivery failed every record, the messages are in the DLQ (returned, received once), the files
    are untagged and uncopied."""
    assert len(invocations) == MAX_RECEIVE_COUNT
    assert all(sorted(i.failed) == sorted(i.message_ids) for i in invocations)
    assert all(i.raised is None or i.raised == "ConfigurationError" for i in invocations)
    dead = queue.dead_letters()
    assert len(dead) == len(keys)
    assert landing_tags(s3) == {key: [] for key in keys}
    assert archive_object_versions(s3) == []
    return dead


# --------------------------------------------------------------------------------------------------------
# 1. Refused or wrong archive configuration: retried, dead-lettered, alarmed; never a rejection
# --------------------------------------------------------------------------------------------------------


def test_1_refused_token_fails_the_record_until_the_dlq_and_a_redrive_after_the_fix_ingests(
    s3, archive_api, queue, context, logs, capsys, monkeypatch
) -> None:
    # Given two frames, and a function whose archive token the archive refuses (401)
    files = frame_files(2)
    keys = list(upload(s3, files))
    set_env(monkeypatch, AUTH_TOKEN="not-the-archive-token")
    capsys.readouterr()
    # When SQS delivers them until its redrive policy gives up
    invocations = queue.deliver_all(handler, context)
    # Then every delivery failed (retried), both messages are in the DLQ, no file was tagged or copied
    dead = assert_dead_lettered_untouched(s3, queue, invocations, keys)
    # And each failure is a SystemFaults{archive_access} (alarmed), none a rejection, with one error line
    metrics = emf(capsys)
    assert counts(metrics, "SystemFaults") == {"archive_access": 2 * MAX_RECEIVE_COUNT}
    assert counts(metrics, "FilesRejected") == {}
    faults = [line for line in logs.lines if line.get("outcome") == "system_fault"]
    assert len(faults) == 2 * MAX_RECEIVE_COUNT
    assert all(line["level"] == "ERROR" and "refused the token (401)" in line["reason"] for line in faults)
    # When the token is fixed and the DLQ redriven
    set_env(monkeypatch, AUTH_TOKEN=ADMIN_TOKEN)
    response = handler(queue.event(dead), context)
    # Then both frames are registered exactly once and the landing bucket is empty
    assert response == {"batchItemFailures": []}
    assert_exactly_once(s3, archive_api, files)


def test_1_wrong_api_root_answering_an_html_404_is_a_one_line_system_fault(
    s3, archive_api, queue, context, logs, capsys, monkeypatch
) -> None:
    # Given an API_ROOT with an extra /api/ (the archive's web site answers an HTML 404 page there)
    files = frame_files(1)
    [key] = upload(s3, files)
    set_env(monkeypatch, API_ROOT=archive_api.api_root + "api/")
    capsys.readouterr()
    # When the notification is delivered once
    first = queue.deliver_once(handler, context)
    # Then the record failed, the file is neither tagged nor copied, and a system fault names API_ROOT in
    # one line without the HTML page
    assert first is not None and first.failed == first.message_ids
    assert landing_tags(s3) == {key: []}
    assert counts(emf(capsys), "SystemFaults") == {"archive_access": 1}
    [fault] = [line for line in logs.lines if line.get("outcome") == "system_fault"]
    assert "check API_ROOT" in fault["reason"] and "404" in fault["reason"]
    assert "<" not in fault["reason"] and "\n" not in fault["message"]


def test_1_rotated_token_is_fetched_again_once_and_the_frame_ingests_at_the_first_delivery(
    s3, archive_api, queue, context, monkeypatch
) -> None:

    from lambda_ingest import clients

    # Given the token in Secrets Manager, already read (and cached) by the function ...
    secrets = new_session().client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(Name="archive-token", SecretString="token-before-rotation")["ARN"]
    monkeypatch.delenv("AUTH_TOKEN")
    set_env(monkeypatch, AUTH_TOKEN_SECRET_ARN=arn)
    assert clients.archive_token() == "token-before-rotation"
    # ... and then rotated to the token the archive now expects
    secrets.put_secret_value(SecretId=arn, SecretString=ADMIN_TOKEN)
    files = frame_files(1)
    upload(s3, files)
    # When the notification is delivered
    invocations = queue.deliver_all(handler, context)
    # Then the 401 made the function read the secret again and repeat the call: ingested at once
    assert [i.failed for i in invocations] == [[]]
    statuses = [status for _, _, status in archive_api.requests_seen]
    assert statuses.count(401) == 1
    assert_exactly_once(s3, archive_api, files)


# --------------------------------------------------------------------------------------------------------
# 2./3. S3: a missing archive bucket, refused access, expired credentials, KMS
# --------------------------------------------------------------------------------------------------------


def test_2_missing_archive_bucket_is_a_system_fault_not_a_skip(
    s3, archive_api, queue, context, capsys, monkeypatch
) -> None:
    # Given a function configured with an archive bucket that does not exist
    files = frame_files(1)
    keys = list(upload(s3, files))
    set_env(monkeypatch, BUCKET="no-such-archive-bucket")
    capsys.readouterr()
    # When SQS delivers the notification until its redrive policy gives up
    invocations = queue.deliver_all(handler, context)
    # Then it was retried into the DLQ, the landing object is kept untagged, and SystemFaults counts it
    assert_dead_lettered_untouched(s3, queue, invocations, keys)
    metrics = emf(capsys)
    assert counts(metrics, "SystemFaults") == {"storage_access": MAX_RECEIVE_COUNT}
    assert counts(metrics, "FilesSkipped") == {}


def test_2_unversioned_archive_bucket_is_a_system_fault_never_a_file_fault(
    s3, archive_api, queue, context, capsys, monkeypatch
) -> None:
    # Given a function pointed at an archive bucket without versioning (the archive needs version ids)
    s3.create_bucket(Bucket="unversioned-archive")
    files = frame_files(1)
    [key] = upload(s3, files)
    set_env(monkeypatch, BUCKET="unversioned-archive")
    capsys.readouterr()
    # When the notification is delivered once
    first = queue.deliver_once(handler, context)
    # Then the record failed as a system fault naming versioning; the file is untagged, nothing registered
    assert first is not None and first.failed == first.message_ids
    assert counts(emf(capsys), "SystemFaults") == {"storage_access": 1}
    assert landing_tags(s3) == {key: []}
    assert archive_api.versions() == []


@pytest.mark.parametrize(
    ("operation", "code"),
    [
        ("GetObject", "AccessDenied"),
        ("GetObject", "ExpiredToken"),
        ("CopyObject", "InvalidAccessKeyId"),
        ("CopyObject", "KMS.DisabledException"),
    ],
)
def test_3_s3_access_errors_fail_the_record_and_never_reject_the_file(
    s3, archive_api, queue, context, s3_faults, capsys, operation: str, code: str
) -> None:
    # Given a frame, and S3 refusing every attempt of the engine's next `operation` call with `code` (a
    # HEAD's answer has no body: botocore sees only its status)
    files = frame_files(1)
    [key] = upload(s3, files)
    s3_faults.fail(operation, 1, code)
    capsys.readouterr()
    # When the notification is delivered once
    first = queue.deliver_once(handler, context)
    # Then the record failed as a system fault: not tagged, not rejected, not skipped
    assert first is not None and first.failed == first.message_ids
    assert s3_faults.calls[operation] >= 1 and s3_faults.pending(operation) == 0
    assert landing_tags(s3) == {key: []}
    metrics = emf(capsys)
    assert counts(metrics, "SystemFaults") == {"storage_access": 1}
    assert counts(metrics, "FilesRejected") == {} and counts(metrics, "FilesSkipped") == {}
    # When the access is restored and SQS redelivers, Then the frame ingests exactly once
    s3_faults.clear()
    queue.deliver_all(handler, context)
    assert_exactly_once(s3, archive_api, files)


def test_an_unclassified_error_is_a_system_fault_not_a_rejection(
    s3, archive_api, queue, context, logs, capsys, monkeypatch
) -> None:
    from lambda_ingest import ingest

    # Given a frame, and a bug: record building raising an error outside the project's error tree
    files = frame_files(1)
    [key] = upload(s3, files)

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("OBSTYPE")

    monkeypatch.setattr(ingest, "read_record", bug)
    capsys.readouterr()
    # When the notification is delivered once
    first = queue.deliver_once(handler, context)
    # Then the record failed and is counted as SystemFaults{unexpected} with one error line; the file untagged
    assert first is not None and first.failed == first.message_ids
    assert counts(emf(capsys), "SystemFaults") == {"unexpected": 1}
    [fault] = [line for line in logs.lines if line.get("outcome") == "system_fault"]
    assert fault["message"] == "system fault: KeyError: 'OBSTYPE'"
    assert landing_tags(s3) == {key: []}


# --------------------------------------------------------------------------------------------------------
# 4./12. Invalid configuration: named, at the start, a system fault
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("DAYS_UNTIL_PUBLIC", "abc"), ("COPY_CONCURRENCY", "65"), ("COPY_CONCURRENCY", "0")],
    ids=["days-until-public", "copy-concurrency-over-64", "copy-concurrency-zero"],
)
def test_4_12_invalid_setting_is_named_and_retried_never_a_file_fault(
    s3, archive_api, queue, context, logs, capsys, monkeypatch, name: str, value: str
) -> None:
    # Given a frame, and a function configured with an invalid `name`
    files = frame_files(1)
    keys = list(upload(s3, files))
    set_env(monkeypatch, **{name: value})
    capsys.readouterr()
    # When SQS delivers it until its redrive policy gives up
    invocations = queue.deliver_all(handler, context)
    # Then every invocation failed, the message is in the DLQ, the file untouched, and the error names `name`
    assert_dead_lettered_untouched(s3, queue, invocations, keys)
    assert counts(emf(capsys), "SystemFaults") == {"configuration": MAX_RECEIVE_COUNT}
    faults = [line for line in logs.lines if line.get("outcome") == "system_fault"]
    assert faults and all(name in line["reason"] for line in faults)


# --------------------------------------------------------------------------------------------------------
# 5. A network read error inside a .tar.gz scan is a transient storage fault, not a bad file
# --------------------------------------------------------------------------------------------------------


def test_5_read_timeout_inside_a_tar_gz_scan_is_retried_not_rejected(s3, archive_api, queue, context, logs) -> None:
    from botocore.response import StreamingBody
    from urllib3.exceptions import ReadTimeoutError

    from lambda_ingest import clients
    from lambda_ingest.local import synthetic as sy

    # Given a good .tar.gz spectrum, and the body of the engine's next GET from S3 timing out when read
    # (botocore's ReadTimeoutError is an OSError, as gzip's and tarfile's own errors are)
    buffer = io.BytesIO()
    sy.write_tarball(buffer)
    files = {(sy.DEFAULT_SPECTRUM_BASENAME, ".tar.gz"): buffer.getvalue()}
    [key] = upload(s3, files)
    failures = iter([True])

    class TimingOut(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise ReadTimeoutError(None, f"https://s3.amazonaws.com/{LANDING}/{key}", "Read timed out.")

    def time_out_once(parsed: dict[str, Any], **_: Any) -> None:
        # botocore's public after-call hook: the response's body is swapped for one whose connection stalls
        if "Body" in parsed and next(failures, False):
            parsed["Body"] = StreamingBody(TimingOut(), int(parsed["ContentLength"]))

    clients.s3().meta.events.register("after-call.s3.GetObject", time_out_once, unique_id="read-timeout-once")
    # When the notification is delivered once
    first = queue.deliver_once(handler, context)
    # Then the record failed as transient (storage unavailable); the file is not tagged or called unreadable
    assert first is not None and first.failed == first.message_ids
    assert landing_tags(s3) == {key: []}
    [line] = logs.with_message("transient failure")
    assert line["reason_class"] == "storage_unavailable" and "ReadTimeoutError" in line["reason"]
    assert "not a readable" not in logs.text
    # When SQS redelivers it, Then it ingests exactly once
    queue.deliver_all(handler, context)
    assert_exactly_once(s3, archive_api, files)


# --------------------------------------------------------------------------------------------------------
# 6. Thumbnails: the archive's 201 has no id; a second POST is an upsert; replaced versions are removed
# --------------------------------------------------------------------------------------------------------

THUMB_NAME = "cpt1m010-kb70-20151219-0100-e00"
THUMB_METADATA = thumbnail_metadata(THUMB_NAME)


def test_6_thumbnail_reupload_and_redelivery_are_upserts_leaving_only_the_registered_version(
    s3, archive_api, queue, context
) -> None:
    # Given a frame, and its thumbnail uploaded, then uploaded again with other bytes (a re-render)
    files = frame_files(1)
    upload(s3, files)
    queue.deliver_all(handler, context)
    key = f"{THUMB_NAME}-small.jpg"
    s3.put_object(Bucket=LANDING, Key=key, Body=b"\xff\xd8\xff\xe0 first render", Metadata=THUMB_METADATA)
    [first_message] = queue.receive()
    # When the first upload's notification is delivered twice (S3 may send it twice), then the second's
    assert handler(queue.event([first_message]), context) == {"batchItemFailures": []}
    s3.put_object(Bucket=LANDING, Key=key, Body=b"\xff\xd8\xff\xe0 second render", Metadata=THUMB_METADATA)
    invocations = queue.deliver_all(handler, context)
    # Then no delivery failed, nothing is dead-lettered, the landing bucket is empty ...
    assert [i.failed for i in invocations] == [[]] * len(invocations)
    assert queue.dead_letters() == [] and landing_keys(s3) == []
    # ... one thumbnail is registered, and its key is the only archive version at the thumbnail's path,
    # holding the newest bytes
    [thumbnail] = archive_api.thumbnails()
    thumb_versions = [v for v in archive_object_versions(s3) if "/thumbnails/" in v["Key"]]
    assert [v["VersionId"] for v in thumb_versions] == [thumbnail["key"]]
    body = s3.get_object(Bucket=ARCHIVE, Key=thumb_versions[0]["Key"], VersionId=thumbnail["key"])["Body"].read()
    assert body.endswith(b"second render")


# --------------------------------------------------------------------------------------------------------
# 7. Idempotency per upload: the same bytes uploaded again are processed
# --------------------------------------------------------------------------------------------------------


@pytest.fixture
def idempotency_table(s3, monkeypatch) -> str:
    from lambda_ingest.outcomes import reset_processor

    new_session().client("dynamodb", region_name="us-east-1").create_table(
        TableName="idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    set_env(monkeypatch, IDEMPOTENCY_TABLE="idempotency")
    reset_processor()
    return "idempotency"


def test_7_same_bytes_uploaded_again_within_the_window_are_processed_and_removed(
    s3, archive_api, queue, context, idempotency_table, logs
) -> None:
    # Given a frame ingested through the Idempotency-guarded handler
    files = frame_files(1)
    upload(s3, files)
    queue.deliver_all(handler, context)
    assert_exactly_once(s3, archive_api, files)
    # When the same bytes are uploaded again to the same key (same ETag), minutes later
    upload(s3, files)
    invocations = queue.deliver_all(handler, context)
    # Then the new upload was processed (already ingested) and its landing object removed, not left forever
    assert [i.failed for i in invocations] == [[]]
    assert [line["outcome"] for line in logs.lines if line.get("message") in ("ingested", "already_ingested")] == [
        "ingested",
        "already_ingested",
    ]
    assert_exactly_once(s3, archive_api, files)


def test_7_upload_identity_is_the_version_else_the_sequencer_else_etag_and_time() -> None:
    from lambda_ingest.events import from_message_body

    def body(**obj: str) -> str:
        record = {"eventName": "ObjectCreated:Put", "eventTime": "2026-12-01T00:00:00.000Z"}
        record["s3"] = {"bucket": {"name": LANDING}, "object": {"key": "a.fits", "eTag": "e", **obj}}
        return json.dumps({"Records": [record]})

    # Given S3 notifications of one key, When decoded, Then each upload has its own identity
    [versioned] = from_message_body(body(versionId="v1", sequencer="0A"))
    [sequenced] = from_message_body(body(sequencer="0B"))
    [bare] = from_message_body(body())
    assert versioned.upload_identity == "version:v1"
    assert sequenced.sequencer == "0B" and sequenced.upload_identity == "sequencer:0B"
    assert bare.upload_identity == "etag:e@2026-12-01T00:00:00.000Z"


# --------------------------------------------------------------------------------------------------------
# 10. Time budget: records the invocation has no time for are not started, and reported failed
# --------------------------------------------------------------------------------------------------------


def test_10_records_without_time_left_are_reported_failed_and_ingested_on_redelivery(
    s3, archive_api, queue, context, logs
) -> None:
    # Given a small and a large frame in one batch, and an invocation with time for the small one only
    small = frame_files(1, first_seq=200, data_bytes=4096)
    large = frame_files(1, first_seq=201, data_bytes=3 * 1024 * 1024)
    upload(s3, small)
    upload(s3, large)
    [large_bytes] = large.values()
    short = LocalContext(timeout_s=(record_budget_ms(len(large_bytes)) - 1) / 1000)
    assert short.get_remaining_time_in_millis() >= record_budget_ms(len(next(iter(small.values()))))
    # When the batch is delivered
    first = queue.deliver_once(handler, short)
    # Then the invocation returned normally, the large frame was not started and is reported failed ...
    assert first is not None and first.raised is None and len(first.failed) == 1
    [deferred] = logs.with_message("not started: not enough time left in this invocation")
    assert deferred["object"].endswith(next(iter(large))[0] + ".fits")
    assert [v["basename"] for v in archive_api.versions()] == [next(iter(small))[0]]
    # ... and its redelivery, with the time it needs, ingests it
    queue.deliver_all(handler, context)
    assert_exactly_once(s3, archive_api, {**small, **large})


def test_10_an_invocation_near_its_deadline_starts_nothing_and_returns(s3, archive_api, queue) -> None:
    # Given three frames, and an invocation with less than the safety margin left
    files = frame_files(3)
    upload(s3, files)
    # When the batch is delivered
    first = queue.deliver_once(handler, LocalContext(timeout_s=1.0))
    # Then every record is reported failed (no exception, so Lambda sees a normal response) and untouched
    assert first is not None and first.raised is None and sorted(first.failed) == sorted(first.message_ids)
    assert archive_object_versions(s3) == [] and archive_api.versions() == []
    assert landing_tags(s3) == {key: [] for key in landing_keys(s3)}


# --------------------------------------------------------------------------------------------------------
# 11. Orphans: in the duplicate-md5 branch nothing is deleted before the registered version is confirmed
# --------------------------------------------------------------------------------------------------------


def test_11_duplicate_md5_whose_confirmation_fails_deletes_nothing_and_the_redelivery_converges(
    s3, archive_api, queue, context, monkeypatch
) -> None:
    from lambda_ingest.archive import ArchiveClient
    from lambda_ingest.errors import ArchiveUnavailableError

    # Given frame A registered, and the same bytes uploaded under another name B
    files = frame_files(1)
    upload(s3, files)
    queue.deliver_all(handler, context)
    [data] = files.values()
    other = "cpt1m010-kb70-20151219-0999-e00.fits"
    s3.put_object(Bucket=LANDING, Key=other, Body=data)
    # ... and the archive failing the lookup that confirms which version holds the bytes (B's second lookup,
    # after its POST was refused as a duplicate md5)
    original = ArchiveClient.find_version
    calls = iter(range(100))

    def second_lookup_fails(self: Any, basename: str, md5: str) -> Any:
        if next(calls) == 1:
            raise ArchiveUnavailableError("GET frames/: archive answered 503")
        return original(self, basename, md5)

    with monkeypatch.context() as m:
        m.setattr(ArchiveClient, "find_version", second_lookup_fails)
        first = queue.deliver_once(handler, context)
    # Then the record failed, and nothing was deleted: B's landing object and B's archive copy are still there
    assert first is not None and first.failed == first.message_ids
    assert landing_keys(s3) == [other]
    assert len(archive_object_versions(s3)) == 2
    # When SQS redelivers it, Then B is already ingested, its copies are gone, nothing is orphaned
    queue.deliver_all(handler, context)
    assert_exactly_once(s3, archive_api, files)


# --------------------------------------------------------------------------------------------------------
# 13./14. Reasons: "not a FITS file" first; tag values in plain words
# --------------------------------------------------------------------------------------------------------


def test_13_14_short_text_file_named_fits_is_not_a_fits_file_in_plain_words(
    s3, archive_api, queue, context, logs
) -> None:
    # Given a 40-byte text file named .fits
    key = "cpt1m010-kb70-20151219-0300-e00.fits"
    s3.put_object(Bucket=LANDING, Key=key, Body=b"this is a note, not an image (really)\n")
    # When it is delivered
    invocations = queue.deliver_all(handler, context)
    # Then it is rejected (not retried) as not a FITS file, and its tag says so in plain words
    assert [i.failed for i in invocations] == [[]]
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=LANDING, Key=key)["TagSet"]}
    assert tags == {
        "ingest-status": "rejected",
        "ingest-reason": "not a FITS file: it does not start with a SIMPLE card",
    }
    [line] = logs.with_message("rejected")
    assert line["reason"] == "not a FITS file: it does not start with a SIMPLE card"


def test_14_tag_values_keep_the_words_and_drop_what_s3_refuses() -> None:
    from lambda_ingest.store import tag_value

    # Given reasons with characters S3 refuses in tag values, When tagged, Then the words stay readable
    assert tag_value("headers exceed 2097152 bytes (HEADER_MAX_BYTES); refusing") == (
        "headers exceed 2097152 bytes HEADER_MAX_BYTES refusing"
    )
    assert tag_value("value 'abc' is too long, max=68") == "value abc is too long max=68"
    assert len(tag_value("x" * 1000)) == 256
