"""The sample events in events/ (for `sam local invoke` and for reading) stay true: the handler ingests each."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from lambda_ingest import events
from lambda_ingest.handler import handler
from tests.conftest import ROOT
from tests.integration.test_handler import LambdaContext

EVENTS = ROOT / "events"
# S3 Batch Operations documents are exercised in test_batch_operations.py.
SAMPLES = sorted(p for p in EVENTS.glob("*.json") if p.name != "env.json" and not p.name.startswith("s3-batch"))


def test_every_kind_of_event_has_a_sample() -> None:
    assert {p.name for p in SAMPLES} == {"s3-put.json", "sqs-s3.json", "eventbridge-object-created.json"}


def object_fields(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The `object` part of every S3 notification or EventBridge detail in the event (inside SQS bodies too)."""
    if events.is_sqs_event(event):
        return [f for record in event["Records"] for f in object_fields(json.loads(record["body"]))]
    if events.is_eventbridge_event(event):
        return [event["detail"]["object"]]
    return [record["s3"]["object"] for record in event["Records"]]


def fill_in(event: dict[str, Any], etag: str, size: int) -> dict[str, Any]:
    """The sample's eTag and size name the bytes its author uploaded; give them the ones this test uploaded."""

    def patch(obj: dict[str, Any]) -> None:
        obj["etag" if "etag" in obj else "eTag"] = etag
        obj["size"] = size

    if events.is_sqs_event(event):
        for record in event["Records"]:
            body = json.loads(record["body"])
            for inner in body["Records"]:
                patch(inner["s3"]["object"])
            record["body"] = json.dumps(body)
            record["md5OfBody"] = hashlib.md5(record["body"].encode()).hexdigest()
    else:
        for obj in object_fields(event):
            patch(obj)
    return event


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_event_ingests_the_object_it_names(s3, archive_api, path: Path) -> None:
    from lambda_ingest.local.synthetic import make_frame_bytes

    # Given the sample, and the object it names (its key URL-encoded, as S3 sends keys) in its landing bucket
    event = json.loads(path.read_text())
    refs = events.from_message_body(event["Records"][0]["body"]) if events.is_sqs_event(event) else []
    refs = refs or events.object_refs(event)
    [ref] = refs
    assert " " in ref.key and "+" not in ref.key  # decoded once: "+" was a space
    s3.create_bucket(Bucket=ref.bucket)
    data = make_frame_bytes(ref.key.rsplit("/", 1)[-1].split(".")[0], ".fits.fz")
    put = s3.put_object(Bucket=ref.bucket, Key=ref.key, Body=data)
    fill_in(event, put["ETag"].strip('"'), len(data))
    # When the handler receives it
    response = handler(event, LambdaContext())
    # Then the object is ingested
    if events.is_sqs_event(event):
        assert response == {"batchItemFailures": []}
    else:
        assert [o["outcome"] for o in response["outcomes"]] == ["ingested"]
    [version] = archive_api.versions()
    assert version["md5"] == hashlib.md5(data).hexdigest()
    assert "Contents" not in s3.list_objects_v2(Bucket=ref.bucket)


def function_logical_id() -> str:
    """The function's logical id in the synthesised template, as CDK derives it from the construct path."""
    from infra import constants as c

    path = [c.FUNCTION_CONSTRUCT_ID, c.FUNCTION_ID, "Resource"]
    digest = hashlib.md5("/".join(path).encode()).hexdigest()[:8].upper()
    return "".join(path[:-1]) + digest


def test_sam_env_json_names_the_function_and_its_variables() -> None:
    from infra import constants as c
    from lambda_ingest.settings import load_settings

    env = json.loads((EVENTS / "env.json").read_text())
    # SAM applies a block to the function whose logical id it is keyed by
    assert list(env) == [function_logical_id()]
    [variables] = env.values()
    # and only overrides variables the template declares: those the stack sets on the function
    declared = {value for name, value in vars(c).items() if name.startswith("ENV_")}
    assert set(variables) <= declared
    assert not set(variables) & c.FORBIDDEN_ENV
    # and the values are valid settings
    settings = load_settings(variables)
    assert settings.idempotency_table is None
    assert settings.keep_landing_object is True
