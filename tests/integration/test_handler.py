"""The Lambda handler on the real notification path: moto S3 -> SQS messages -> handler(SQS event)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote_plus

import pytest

from lambda_ingest.clients import new_session
from lambda_ingest.context import LocalContext as LambdaContext
from lambda_ingest.handler import handler
from tests.conftest import ADMIN_TOKEN, ARCHIVE, LANDING

NAME = "cpt1m010-kb70-20151219-0073-e00"


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext()


def drain(queue) -> dict:
    """Every message moto produced, as the SQS event Lambda's event source mapping would deliver."""
    from lambda_ingest.local.stack import sqs_event

    sqs, url, arn = queue
    messages = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        messages.extend(got)
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return sqs_event(messages, arn)


def frame(name: str = NAME, **kwargs) -> bytes:
    from lambda_ingest.local.synthetic import make_frame_bytes

    return make_frame_bytes(basename=name, extension=".fits.fz", **kwargs)


def bad_frame(name: str = NAME) -> bytes:
    from lambda_ingest.local.synthetic import lco_header

    return frame(name, header=lco_header(name, drop=("DAY-OBS",)))


def s3_records(event: dict) -> list[dict]:
    return [r for rec in event["Records"] for r in json.loads(rec["body"]).get("Records", [])]


def test_sqs_path_ingests_and_ignores_the_test_event(s3, archive_api, queue, context) -> None:
    # Given a frame uploaded to the landing bucket (moto also queued its s3:TestEvent)
    s3.put_object(Bucket=LANDING, Key=f"raw/{NAME}.fits.fz", Body=frame())
    event = drain(queue)
    assert any("s3:TestEvent" in r["body"] for r in event["Records"])
    # When the handler receives the SQS batch
    response = handler(event, context)
    # Then nothing is reported failed and the frame is registered once
    assert response == {"batchItemFailures": []}
    assert len(archive_api.versions()) == 1
    assert s3.list_objects_v2(Bucket=LANDING)["KeyCount"] == 0


def test_direct_s3_event_processes_every_record(s3, archive_api, queue, context) -> None:
    s3.put_object(Bucket=LANDING, Key=f"{NAME}.fits.fz", Body=frame())
    other = "cpt1m010-kb70-20151219-0074-e00"
    s3.put_object(Bucket=LANDING, Key=f"{other}.fits.fz", Body=frame(other, seed=7))
    direct = {"Records": s3_records(drain(queue))}
    response = handler(direct, context)
    assert [o["outcome"] for o in response["outcomes"]] == ["ingested", "ingested"]
    assert {f["basename"] for f in archive_api.frames()} == {NAME, other}


def test_eventbridge_object_created(s3, archive_api, context) -> None:
    put = s3.put_object(Bucket=LANDING, Key=f"a b/{NAME}.fits.fz", Body=frame())
    event = {
        "version": "0",
        "id": "eb-1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2026-11-27T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "bucket": {"name": LANDING},
            "object": {"key": quote_plus(f"a b/{NAME}.fits.fz"), "etag": put["ETag"].strip('"')},
        },
    }
    assert handler(event, context)["outcomes"][0]["outcome"] == "ingested"


@pytest.mark.parametrize(
    "prefix",
    ["with space/", "plus+sign/", "percent%25/", "ünïcødé ☃/", "x" * 950 + "/"],
    ids=["space", "plus", "percent", "unicode", "1KB"],
)
def test_url_encoded_keys_are_decoded(s3, archive_api, queue, context, prefix: str) -> None:
    key = f"{prefix}{NAME}.fits.fz"
    s3.put_object(Bucket=LANDING, Key=key, Body=frame())
    event = drain(queue)
    assert handler(event, context) == {"batchItemFailures": []}
    assert len(archive_api.versions()) == 1


def test_folder_markers_are_ignored(s3, archive_api, queue, context) -> None:
    s3.put_object(Bucket=LANDING, Key="night/", Body=b"")
    assert handler(drain(queue), context) == {"batchItemFailures": []}
    assert archive_api.versions() == []
    assert s3.get_object_tagging(Bucket=LANDING, Key="night/")["TagSet"] == []


def test_mixed_batch_reports_only_the_transient_record(s3, archive_api, queue, context) -> None:
    names = [f"cpt1m010-kb70-20151219-00{n}-e00" for n in (80, 81, 82)]
    s3.put_object(Bucket=LANDING, Key=f"{names[0]}.fits.fz", Body=frame(names[0], seed=1))  # transient
    s3.put_object(Bucket=LANDING, Key=f"{names[1]}.fits.fz", Body=frame(names[1], seed=2))  # good
    s3.put_object(Bucket=LANDING, Key=f"{names[2]}.fits.fz", Body=bad_frame(names[2]))  # bad
    event = drain(queue)
    event["Records"] = [r for r in event["Records"] if "TestEvent" not in r["body"]]
    event["Records"].sort(key=lambda r: json.loads(r["body"])["Records"][0]["s3"]["object"]["key"])
    archive_api.inject(status=503, count=1, method="POST")
    response = handler(event, context)
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    # The bad one is kept and tagged with the reason; the transient one is untouched
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=LANDING, Key=f"{names[2]}.fits.fz")["TagSet"]}
    assert tags == {"ingest-status": "rejected", "ingest-reason": "missing required header DAY-OBS"}
    assert s3.get_object_tagging(Bucket=LANDING, Key=f"{names[0]}.fits.fz")["TagSet"] == []
    # When SQS redelivers the failed record, it ingests
    retry = {"Records": [event["Records"][0]]}
    assert handler(retry, context) == {"batchItemFailures": []}
    assert {f["basename"] for f in archive_api.frames()} == {names[0], names[1]}


def test_rejected_then_corrected_upload_ingests(s3, archive_api, queue, context) -> None:
    s3.put_object(Bucket=LANDING, Key=f"{NAME}.fits.fz", Body=bad_frame())
    handler(drain(queue), context)
    s3.put_object(Bucket=LANDING, Key=f"{NAME}.fits.fz", Body=frame())
    assert handler(drain(queue), context) == {"batchItemFailures": []}
    assert len(archive_api.versions()) == 1


@pytest.fixture
def idempotency_table(s3, monkeypatch):
    from lambda_ingest.outcomes import reset_processor
    from lambda_ingest.settings import reset_settings

    new_session().client("dynamodb", region_name="us-east-1").create_table(
        TableName="idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "idempotency")
    monkeypatch.setenv("KEEP_LANDING_OBJECT", "true")  # so every duplicate delivery finds the object
    reset_settings()
    reset_processor()
    return "idempotency"


def test_duplicate_deliveries_sequential_and_concurrent(s3, archive_api, queue, context, idempotency_table) -> None:
    s3.put_object(Bucket=LANDING, Key=f"{NAME}.fits.fz", Body=frame())
    event = drain(queue)
    for _ in range(3):
        assert handler(event, context) == {"batchItemFailures": []}
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: handler(event, context), range(4)))
    # A delivery that met another one in progress is reported failed (SQS retries it later) ...
    frame_message = next(r["messageId"] for r in event["Records"] if "TestEvent" not in r["body"])
    assert all(r["batchItemFailures"] in ([], [{"itemIdentifier": frame_message}]) for r in responses)
    # ... and that retry reads the stored outcome
    assert handler(event, context) == {"batchItemFailures": []}
    versions = s3.list_object_versions(Bucket=ARCHIVE).get("Versions", [])
    assert len(versions) == 1
    assert len(archive_api.versions()) == 1


def test_token_from_secrets_manager_and_never_leaked(s3, archive_api, queue, context, monkeypatch, capsys) -> None:
    from lambda_ingest.settings import reset_settings

    arn = (
        new_session()
        .client("secretsmanager", region_name="us-east-1")
        .create_secret(Name="archive-token", SecretString=ADMIN_TOKEN)["ARN"]
    )
    monkeypatch.delenv("AUTH_TOKEN")
    monkeypatch.setenv("AUTH_TOKEN_SECRET_ARN", arn)
    reset_settings()
    s3.put_object(Bucket=LANDING, Key=f"{NAME}.fits.fz", Body=frame())
    s3.put_object(
        Bucket=LANDING, Key="cpt1m010-kb70-20151219-0090-e00.fits.fz", Body=bad_frame("cpt1m010-kb70-20151219-0090-e00")
    )
    event = drain(queue)
    archive_api.inject(status=500, count=1, method="POST")
    first = handler(event, context)
    second = handler(event, context)
    assert first["batchItemFailures"] and second == {"batchItemFailures": []}
    assert len(archive_api.versions()) == 1
    captured = capsys.readouterr()
    assert ADMIN_TOKEN not in captured.out + captured.err


class _Collector(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("asynchronous", ["False", "True"])
def test_opentsdb_metrics_use_ocs_ingester_names(s3, archive_api, queue, context, monkeypatch, asynchronous) -> None:
    from lambda_ingest.settings import reset_settings

    _Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.delenv("OPENTSDB_PYTHON_METRICS_TEST_MODE")
        monkeypatch.setenv("OPENTSDB_HOSTNAME", "127.0.0.1")
        monkeypatch.setenv("OPENTSDB_PORT", str(server.server_address[1]))
        monkeypatch.setenv("INGESTER_PROCESS_NAME", "night-ingest")
        monkeypatch.setenv("SUBMIT_METRICS_ASYNCHRONOUSLY", asynchronous)
        reset_settings()
        s3.put_object(Bucket=LANDING, Key=f"{NAME}.fits.fz", Body=frame())
        assert handler(drain(queue), context) == {"batchItemFailures": []}
    finally:
        server.shutdown()
        server.server_close()
    points = [p for path, batch in _Collector.received if path == "/api/put" for p in batch]
    assert {p["metric"] for p in points} == {
        "ingester.get_md5",
        "ingester.upload_file",
        "ingester.post_frame",
        "ingester.s3_upload_bytes_per_second",
        "ingester.ingest_lag",
    }
    assert all(p["tags"] == {"ingester_process_name": "night-ingest"} for p in points)


def test_opentsdb_down_never_fails_an_ingest(s3, archive_api, queue, context, monkeypatch) -> None:
    from lambda_ingest.settings import reset_settings

    monkeypatch.delenv("OPENTSDB_PYTHON_METRICS_TEST_MODE")
    monkeypatch.setenv("OPENTSDB_HOSTNAME", "127.0.0.1")
    monkeypatch.setenv("OPENTSDB_PORT", "9")  # discard port: connection refused
    reset_settings()
    s3.put_object(Bucket=LANDING, Key=f"{NAME}.fits.fz", Body=frame())
    assert handler(drain(queue), context) == {"batchItemFailures": []}


def test_idempotency_remembers_successes_only_and_a_refused_token_is_no_rejection(
    s3, archive_api, queue, context, idempotency_table, monkeypatch
) -> None:
    from lambda_ingest.settings import reset_settings

    # Given a deployment whose token the archive refuses
    monkeypatch.setenv("AUTH_TOKEN", "not-the-archive-token")
    reset_settings()
    s3.put_object(Bucket=LANDING, Key=f"{NAME}.fits.fz", Body=frame())
    event = drain(queue)
    frame_message = next(r["messageId"] for r in event["Records"] if "TestEvent" not in r["body"])
    # When the notification is delivered, Then the record fails (SQS retries it) and the file is not tagged
    assert handler(event, context) == {"batchItemFailures": [{"itemIdentifier": frame_message}]}
    assert s3.get_object_tagging(Bucket=LANDING, Key=f"{NAME}.fits.fz")["TagSet"] == []
    # When the token is fixed and the same event is delivered again (a retry or a DLQ redrive)
    monkeypatch.setenv("AUTH_TOKEN", ADMIN_TOKEN)
    reset_settings()
    assert handler(event, context) == {"batchItemFailures": []}
    # Then it ingests: the failure was not remembered as the event's outcome
    assert len(archive_api.versions()) == 1


def test_orphan_sweep_runs_on_every_delivery_even_a_first_receive(s3, archive_api, queue, context, monkeypatch) -> None:
    from lambda_ingest import ingest
    from lambda_ingest.archive import ArchiveClient

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # a killed Lambda: no except Exception, no cleanup

    # Given a frame whose first delivery was killed after the copy, before the POST (finding 11) ...
    s3.put_object(Bucket=LANDING, Key=f"{NAME}.fits.fz", Body=frame())
    event = drain(queue)
    for record in event["Records"]:
        record["attributes"] = {"ApproximateReceiveCount": "1"}
    with monkeypatch.context() as m:
        m.setattr(ArchiveClient, "post", crash)
        m.setattr(ingest, "_discard_copy", crash)
        with pytest.raises(KeyboardInterrupt):
            handler(event, context)
    assert len(s3.list_object_versions(Bucket=ARCHIVE)["Versions"]) == 1
    # When S3's duplicate notification of the same upload arrives as a new message (receive count 1)
    assert handler(event, context) == {"batchItemFailures": []}
    # Then the crashed attempt's copy is swept: one archive version, the registered one
    [registered] = archive_api.versions()
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=ARCHIVE)["Versions"]] == [registered["key"]]
