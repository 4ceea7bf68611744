"""Outcome events: the handler publishes one EventBridge event per outcome; a rule delivers them to SQS.

moto's EventBridge (in-process) routes the events through a real rule to a real (moto) SQS queue, as the
deployed example rule does for a reduction pipeline.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambda_ingest.context import LocalContext
from lambda_ingest.handler import handler
from lambda_ingest.settings import reset_settings
from tests.conftest import ARCHIVE, LANDING
from tests.integration.test_handler import bad_frame, drain, frame

BUS = "lambda-ingest-events"
GOOD = "cpt1m010-kb70-20151219-0073-e00"
BAD = "cpt1m010-kb70-20151219-0074-e00"


@pytest.fixture
def subscriber(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An event bus whose rule sends every lambda_ingest event to an SQS queue; returns a reader of it."""
    import boto3

    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="downstream")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name=BUS)
    events.put_rule(Name="all-outcomes", EventBusName=BUS, EventPattern=json.dumps({"source": ["lambda_ingest"]}))
    events.put_targets(Rule="all-outcomes", EventBusName=BUS, Targets=[{"Id": "downstream", "Arn": arn}])
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    reset_settings()

    def received() -> list[dict[str, Any]]:
        out = []
        while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in got:
                out.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return out

    return received


def emf(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if '"_aws"' in line]


def test_an_archived_frame_and_a_rejected_file_each_reach_the_subscriber(
    s3, archive_api, queue, subscriber, capsys
) -> None:
    # Given a good frame and a frame without DAY-OBS in the landing bucket
    s3.put_object(Bucket=LANDING, Key=f"raw/{GOOD}.fits.fz", Body=frame(GOOD))
    s3.put_object(Bucket=LANDING, Key=f"raw/{BAD}.fits.fz", Body=bad_frame(BAD))
    # When the handler processes the queued notifications
    assert handler(drain(queue), LocalContext()) == {"batchItemFailures": []}
    # Then the subscriber's queue holds exactly one "Frame Archived" and one "File Rejected"
    events = {e["detail-type"]: e for e in subscriber()}
    assert sorted(events) == ["File Rejected", "Frame Archived"]
    assert {e["source"] for e in events.values()} == {"lambda_ingest"}
    archived = events["Frame Archived"]["detail"]
    version = archive_api.versions()[0]
    assert archived["schema_version"] == "1.0"
    assert archived["basename"] == GOOD and archived["md5"] == version["md5"]
    assert archived["version_id"] == version["key"] and archived["frame_id"] is not None
    assert archived["archive_bucket"] == ARCHIVE
    registered = archive_api.frames()[0]
    assert archived["frame_id"] == registered["id"]
    assert archived["archive_key"] == f"cpt/kb70/20151219/raw/{GOOD}.fits.fz"
    head = s3.head_object(Bucket=ARCHIVE, Key=archived["archive_key"], VersionId=archived["version_id"])
    assert archived["size"] == head["ContentLength"]
    # the path of the version's URL, without the presigned query
    assert archived["url_path"].endswith(f"/{archived['archive_key']}") and "?" not in archived["url_path"]
    for name in ("site_id", "telescope_id", "instrument_id", "configuration_type", "reduction_level"):
        assert archived[name] == registered[name] and archived[name] is not None, name
    assert archived["observation_day"].replace("-", "") == "20151219"
    assert archived["observation_date"][:10] == str(registered["observation_date"])[:10]
    assert (archived["landing_bucket"], archived["landing_key"]) == (LANDING, f"raw/{GOOD}.fits.fz")
    rejected = events["File Rejected"]["detail"]
    assert (rejected["landing_bucket"], rejected["landing_key"]) == (LANDING, f"raw/{BAD}.fits.fz")
    assert "DAY-OBS" in rejected["reason"] and rejected["reason_class"] == "invalid_record"
    # And each publication was counted
    published = [m for m in emf(capsys.readouterr().out) if "EventsPublished" in m]
    assert sum(len(m["EventsPublished"]) for m in published) == 2


def test_a_redelivered_frame_publishes_nothing_more(s3, archive_api, queue, subscriber) -> None:
    # Given a frame that was ingested (and announced) once
    body = frame(GOOD)
    s3.put_object(Bucket=LANDING, Key=f"raw/{GOOD}.fits.fz", Body=body)
    handler(drain(queue), LocalContext())
    assert [e["detail-type"] for e in subscriber()] == ["Frame Archived"]
    # When the same bytes arrive again (already ingested)
    s3.put_object(Bucket=LANDING, Key=f"again/{GOOD}.fits.fz", Body=body)
    assert handler(drain(queue), LocalContext()) == {"batchItemFailures": []}
    # Then no second "Frame Archived" is published: downstream hears of each frame's bytes once
    assert subscriber() == []


def test_a_system_fault_publishes_an_ingest_fault_and_is_still_retried(
    s3, archive_api, queue, subscriber, monkeypatch
) -> None:
    # Given a function with no archive token (an operator's mistake, not the file's)
    monkeypatch.setenv("AUTH_TOKEN", "")
    reset_settings()
    s3.put_object(Bucket=LANDING, Key=f"raw/{GOOD}.fits.fz", Body=frame(GOOD))
    event = drain(queue)
    # When the handler processes the notification
    response = handler(event, LocalContext())
    # Then the record is reported failed (SQS retries it) and the landing object is untouched
    assert len(response["batchItemFailures"]) == 1
    assert s3.list_objects_v2(Bucket=LANDING)["KeyCount"] == 1
    # And the subscriber got one "Ingest Fault" naming the object and the configuration fault
    events = subscriber()
    assert [e["detail-type"] for e in events] == ["Ingest Fault"]
    detail = events[0]["detail"]
    assert detail["landing_key"] == f"raw/{GOOD}.fits.fz" and detail["reason_class"] == "configuration"
    assert "token" in detail["reason"]


def test_a_failure_to_publish_never_fails_the_ingest(s3, archive_api, queue, monkeypatch, capsys, caplog) -> None:
    # Given a function whose event bus does not exist (deleted, or a typo in EVENT_BUS_NAME)
    monkeypatch.setenv("EVENT_BUS_NAME", "no-such-bus")
    reset_settings()
    s3.put_object(Bucket=LANDING, Key=f"raw/{GOOD}.fits.fz", Body=frame(GOOD))
    # When the handler ingests the frame
    response = handler(drain(queue), LocalContext())
    # Then the frame is archived all the same and the landing object removed
    assert response == {"batchItemFailures": []}
    assert len(archive_api.versions()) == 1
    assert s3.list_objects_v2(Bucket=LANDING)["KeyCount"] == 0
    # And the failure was logged and counted, not the success
    warnings = [r for r in caplog.records if r.getMessage() == "outcome event not published"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    metrics = emf(capsys.readouterr().out)
    assert [m for m in metrics if "EventPublishFailures" in m]
    assert not [m for m in metrics if "EventsPublished" in m]


def test_without_an_event_bus_nothing_is_published(s3, archive_api, queue, capsys) -> None:
    # Given no EVENT_BUS_NAME (the default)
    s3.put_object(Bucket=LANDING, Key=f"raw/{GOOD}.fits.fz", Body=frame(GOOD))
    # When a frame is ingested
    assert handler(drain(queue), LocalContext()) == {"batchItemFailures": []}
    # Then no publication was attempted, neither counted as sent nor as failed
    out = capsys.readouterr().out
    assert "EventsPublished" not in out and "EventPublishFailures" not in out
