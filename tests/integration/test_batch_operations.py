"""S3 Batch Operations invocations (schemas 1.0 and 2.0) through the Lambda handler.

The documents are events/s3-batch-operations-{1.0,2.0}.json, the exact shape S3 Batch Operations sends (AWS
Lambda developer guide, "Invoke a Lambda function with Amazon S3 batch events"; schema 2.0 as in Powertools'
S3BatchOperationEvent): the answer must carry the invocation id, one result per task id, and a result code
the job's completion report records.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any
from urllib.parse import quote_plus

import pytest

from lambda_ingest.context import LocalContext
from lambda_ingest.handler import handler
from lambda_ingest.settings import reset_settings
from tests.conftest import LANDING, ROOT
from tests.integration.test_handler import bad_frame, frame

GOOD = "cpt1m010-kb70-20151219-0073-e00"
BAD = "cpt1m010-kb70-20151219-0074-e00"
INVOCATION_ID = "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo"
TASK_ID = "dGFza2lkZ29lc2hlcmUK"


def document(sample: str, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any]:
    """A sample invocation document from events/ (as Batch Operations sends it), naming this object."""
    doc = json.loads((ROOT / "events" / sample).read_text())
    [task] = doc["tasks"]
    task["s3Key"] = quote_plus(key, safe="/")  # keys arrive URL-encoded
    task["s3VersionId"] = version_id
    if "s3BucketArn" in task:  # schema 1.0 names the bucket by ARN, 2.0 by name
        task["s3BucketArn"] = f"arn:aws:s3:::{bucket}"
    else:
        task["s3Bucket"] = bucket
    return doc


schema_1_0 = partial(document, "s3-batch-operations-1.0.json")
schema_2_0 = partial(document, "s3-batch-operations-2.0.json")


@pytest.mark.parametrize("make", [schema_1_0, schema_2_0], ids=["schema-1.0", "schema-2.0"])
def test_a_good_object_succeeds_and_is_archived(s3, archive_api, make) -> None:
    # Given a frame listed in a Batch Operations manifest (its key has a space, URL-encoded in the task)
    key = f"backfill 2015/{GOOD}.fits.fz"
    s3.put_object(Bucket=LANDING, Key=key, Body=frame(GOOD))
    # When the job invokes the function for its task
    answer = handler(make(LANDING, key), LocalContext())
    # Then the answer is the documented response, naming the task as Succeeded with the archive key
    assert answer["invocationSchemaVersion"] == make(LANDING, key)["invocationSchemaVersion"]
    assert answer["invocationId"] == INVOCATION_ID
    assert answer["treatMissingKeysAs"] == "PermanentFailure"
    [result] = answer["results"]
    assert (result["taskId"], result["resultCode"]) == (TASK_ID, "Succeeded")
    assert result["resultString"].startswith(f"ingested: cpt/kb70/20151219/raw/{GOOD}.fits.fz ")
    # And the frame is registered and its landing object removed, as on the notification path
    assert [v["basename"] for v in archive_api.versions()] == [GOOD]
    assert s3.list_objects_v2(Bucket=LANDING)["KeyCount"] == 0


def test_a_frame_already_archived_succeeds_without_a_second_version(s3, archive_api) -> None:
    # Given a frame already ingested once, uploaded again for a backfill
    s3.put_object(Bucket=LANDING, Key=f"a/{GOOD}.fits.fz", Body=frame(GOOD))
    handler(schema_2_0(LANDING, f"a/{GOOD}.fits.fz"), LocalContext())
    s3.put_object(Bucket=LANDING, Key=f"b/{GOOD}.fits.fz", Body=frame(GOOD))
    # When the job's task names it
    answer = handler(schema_2_0(LANDING, f"b/{GOOD}.fits.fz"), LocalContext())
    # Then it succeeds as already ingested and the archive still holds one version
    assert answer["results"][0]["resultCode"] == "Succeeded"
    assert answer["results"][0]["resultString"].startswith("already_ingested")
    assert len(archive_api.versions()) == 1


@pytest.mark.parametrize("make", [schema_1_0, schema_2_0], ids=["schema-1.0", "schema-2.0"])
def test_a_bad_file_is_a_permanent_failure_with_its_reason(s3, archive_api, make) -> None:
    # Given a frame without DAY-OBS in the manifest
    key = f"raw/{BAD}.fits.fz"
    s3.put_object(Bucket=LANDING, Key=key, Body=bad_frame(BAD))
    # When the job invokes the function
    [result] = handler(make(LANDING, key), LocalContext())["results"]
    # Then the completion report says PermanentFailure with the reason (not retried by the job)
    assert result["resultCode"] == "PermanentFailure"
    assert "DAY-OBS" in result["resultString"] and "invalid_record" in result["resultString"]
    # And the object is kept and tagged, as on the notification path
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=LANDING, Key=key)["TagSet"]}
    assert tags["ingest-status"] == "rejected"
    assert archive_api.versions() == []


def test_a_system_fault_is_a_temporary_failure_and_blames_no_file(s3, archive_api, monkeypatch) -> None:
    # Given a function without an archive token
    monkeypatch.setenv("AUTH_TOKEN", "")
    reset_settings()
    key = f"raw/{GOOD}.fits.fz"
    s3.put_object(Bucket=LANDING, Key=key, Body=frame(GOOD))
    # When the job invokes it
    [result] = handler(schema_1_0(LANDING, key), LocalContext())["results"]
    # Then the task is a TemporaryFailure (the job retries it) naming the fault, and the file is untagged
    assert result["resultCode"] == "TemporaryFailure"
    assert result["resultString"].startswith("configuration:")
    assert s3.get_object_tagging(Bucket=LANDING, Key=key)["TagSet"] == []


def test_an_unavailable_archive_is_a_temporary_failure(s3, archive_api) -> None:
    # Given an archive answering 503 to the lookup
    s3.put_object(Bucket=LANDING, Key=f"raw/{GOOD}.fits.fz", Body=frame(GOOD))
    archive_api.inject(status=503, count=10)
    # When the job invokes the function
    [result] = handler(schema_2_0(LANDING, f"raw/{GOOD}.fits.fz"), LocalContext())["results"]
    # Then the task is a TemporaryFailure and the landing object stays for the retry
    assert result["resultCode"] == "TemporaryFailure" and "503" in result["resultString"]
    assert s3.list_objects_v2(Bucket=LANDING)["KeyCount"] == 1


def test_an_object_deleted_since_the_manifest_succeeds_as_skipped(s3, archive_api) -> None:
    # Given a manifest naming an object that no longer exists
    # When the job invokes the function for it
    [result] = handler(schema_2_0(LANDING, f"raw/{GOOD}.fits.fz"), LocalContext())["results"]
    # Then there is nothing to do: Succeeded, with the reason in the report
    assert result["resultCode"] == "Succeeded" and result["resultString"].startswith("skipped:")


def test_a_task_with_a_version_id_ingests_exactly_that_version(s3, archive_api) -> None:
    # Given a versioned landing bucket where the manifest's version of an object was since overwritten
    import hashlib

    s3.put_bucket_versioning(Bucket=LANDING, VersioningConfiguration={"Status": "Enabled"})
    key = f"raw/{GOOD}.fits.fz"
    first_bytes = frame(GOOD)
    first = s3.put_object(Bucket=LANDING, Key=key, Body=first_bytes)["VersionId"]
    s3.put_object(Bucket=LANDING, Key=key, Body=bad_frame(GOOD))
    # When the job's task names the first version
    [result] = handler(schema_1_0(LANDING, key, first), LocalContext())["results"]
    # Then exactly those bytes are archived (the newer, bad upload is not what the task named)
    assert result["resultCode"] == "Succeeded"
    [version] = archive_api.versions()
    assert version["md5"] == hashlib.md5(first_bytes).hexdigest()
