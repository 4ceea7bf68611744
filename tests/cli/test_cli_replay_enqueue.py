"""`lambda-ingest replay --enqueue QUEUE_URL s3://bucket/prefix`: the deployed fleet does the backfill."""

from __future__ import annotations

import itertools
import json

from lambda_ingest.context import LocalContext
from lambda_ingest.handler import handler
from lambda_ingest.local.stack import LANDING_BUCKET, sqs_event
from tests.cli.conftest import archive_frames, basename, lines

_queues = itertools.count()


def new_queue(stack) -> tuple[str, str]:
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=f"enqueue-test-{next(_queues)}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def receive_all(stack, url: str) -> list[dict]:
    sqs = stack.client("sqs")
    messages = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", []):
        messages.extend(got)
    return messages


def test_enqueued_notifications_are_ingested_by_the_handler(cli, stack, new_frame, in_process) -> None:
    # Given frames already in the landing bucket under a prefix (one key with a space and a plus), and a
    # frame outside the prefix
    s3 = stack.client("s3")
    frames = [new_frame(), new_frame(ext=".fits")]
    keys = [f"enqueue/night 1+2/{frames[0].name}", f"enqueue/{frames[1].name}"]
    for key, path in zip(keys, frames, strict=True):
        s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=path.read_bytes())
    outside = new_frame()
    s3.put_object(Bucket=LANDING_BUCKET, Key=f"not-enqueued/{outside.name}", Body=outside.read_bytes())
    url, arn = new_queue(stack)
    # When the prefix is enqueued on the ingest queue
    run = cli.run("replay", "--enqueue", url, f"s3://{LANDING_BUCKET}/enqueue/")
    # Then one message per object was sent and the summary says so; nothing was ingested here
    assert run.returncode == 0, run.stderr
    assert lines(run.stdout) == [["2 objects: 2 enqueued"]]
    assert not any(basename(p) in archive_frames(stack) for p in frames)
    messages = receive_all(stack, url)
    assert len(messages) == 2
    # And each message is the S3 notification the handler expects: fed to it, both frames are ingested
    response = handler(sqs_event(messages, arn), LocalContext())
    assert response == {"batchItemFailures": []}
    registered = archive_frames(stack)
    assert all(basename(p) in registered for p in frames)
    assert basename(outside) not in registered
    listing = s3.list_objects_v2(Bucket=LANDING_BUCKET, Prefix="enqueue/")
    assert listing["KeyCount"] == 0


def test_enqueue_batches_many_objects_and_keeps_their_etags(stack, in_process, capsys) -> None:
    from lambda_ingest.cli import main

    # Given 25 objects under a prefix (3 SendMessageBatch calls' worth)
    s3 = stack.client("s3")
    etags = {}
    for i in range(25):
        key = f"many/obj-{i:02d}.fits"
        etags[key] = s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=b"x" * (i + 1))["ETag"].strip('"')
    s3.put_object(Bucket=LANDING_BUCKET, Key="many/folder/", Body=b"")
    url, _ = new_queue(stack)
    # When they are enqueued with two senders
    assert main(["replay", "--enqueue", url, f"s3://{LANDING_BUCKET}/many/", "--concurrency", "2"]) == 0
    assert capsys.readouterr().out == "25 objects: 25 enqueued\n"
    # Then each object has exactly one message naming it with its ETag and size (the folder marker none)
    records = [json.loads(m["Body"])["Records"][0] for m in receive_all(stack, url)]
    assert sorted(r["s3"]["object"]["key"] for r in records) == sorted(etags)
    for record in records:
        assert record["eventSource"] == "aws:s3" and record["eventName"].startswith("ObjectCreated:")
        assert record["s3"]["bucket"]["name"] == LANDING_BUCKET
        assert record["s3"]["object"]["eTag"] == etags[record["s3"]["object"]["key"]]


def test_enqueue_to_a_missing_queue_reports_every_object_and_exits_1(stack, in_process, capsys) -> None:
    from lambda_ingest.cli import main

    # Given two objects and a queue URL that does not exist
    s3 = stack.client("s3")
    for i in range(2):
        s3.put_object(Bucket=LANDING_BUCKET, Key=f"lost/obj-{i}.fits", Body=b"x")
    missing = new_queue(stack)[0].rsplit("/", 1)[0] + "/no-such-queue"
    # When they are enqueued
    code = main(["replay", "--enqueue", missing, f"s3://{LANDING_BUCKET}/lost/"])
    # Then each object is reported failed (none silently lost), the error is named once, and the exit code is 1
    captured = capsys.readouterr()
    out = lines(captured.out)
    assert "stopped enqueuing" in captured.err and "does not exist" in captured.err
    assert code == 1
    assert sorted(row[0] for row in out[:-1]) == [f"s3://{LANDING_BUCKET}/lost/obj-{i}.fits" for i in range(2)]
    assert {row[1] for row in out[:-1]} == {"failed"}
    assert out[-1] == ["2 objects: 0 enqueued, 2 failed"]
