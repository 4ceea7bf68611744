"""`lambda-ingest replay`: backfill from the landing bucket, and re-drive the dead-letter queue."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
from urllib.parse import quote_plus

import pytest

from lambda_ingest import cli as cli_module
from lambda_ingest.cli import Progress, main
from lambda_ingest.local.stack import LANDING_BUCKET
from tests.cli.conftest import archive_frames, basename, command, lines


def landing_keys(stack, prefix: str) -> list[str]:
    listing = stack.client("s3").list_objects_v2(Bucket=LANDING_BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_replay_ingests_everything_under_the_prefix(cli, stack, new_frame, tmp_path) -> None:
    # Given objects already in the landing bucket (e.g. uploaded while the function was down)
    s3 = stack.client("s3")
    good = [new_frame(), new_frame(ext=".fits")]
    bad = new_frame(drop=("DAY-OBS",))
    outside = new_frame()
    for path in (*good, bad):
        s3.put_object(Bucket=LANDING_BUCKET, Key=f"backfill/night 1/{path.name}", Body=path.read_bytes())
    s3.put_object(Bucket=LANDING_BUCKET, Key=f"elsewhere/{outside.name}", Body=outside.read_bytes())
    # When the prefix is replayed
    run = cli.run("replay", f"s3://{LANDING_BUCKET}/backfill/", "--concurrency", "2")
    # Then the good ones are ingested and removed from the landing bucket, the bad one is reported, tagged and
    # kept; the summary counts them by outcome; the exit code says not everything made it
    assert run.returncode == 1, run.stderr
    bad_uri = f"s3://{LANDING_BUCKET}/backfill/night 1/{bad.name}"
    # (results on stdout, the summary on stderr)
    assert lines(run.stdout) == [[bad_uri, "rejected", "missing required header DAY-OBS"]]
    assert run.stderr.splitlines()[-1] == "3 objects: 2 ingested, 1 rejected"
    frames = archive_frames(stack)
    assert all(basename(path) in frames for path in good)
    assert landing_keys(stack, "backfill/") == [f"backfill/night 1/{bad.name}"]
    tags = s3.get_object_tagging(Bucket=LANDING_BUCKET, Key=f"backfill/night 1/{bad.name}")["TagSet"]
    assert {"Key": "ingest-status", "Value": "rejected"} in tags
    # And nothing outside the prefix was touched
    assert landing_keys(stack, "elsewhere/") == [f"elsewhere/{outside.name}"]
    assert basename(outside) not in frames


def test_replay_exits_0_when_everything_made_it(stack, new_frame, in_process, capsys) -> None:
    s3 = stack.client("s3")
    for path in (new_frame(), new_frame()):
        s3.put_object(Bucket=LANDING_BUCKET, Key=f"all-good/{path.name}", Body=path.read_bytes())
    assert main(["replay", f"s3://{LANDING_BUCKET}/all-good/", "-v"]) == 0
    # stdout carries results only (none: nothing went wrong); the summary and, with -v, the engine's JSON
    # log line per object go to stderr
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == "2 objects: 2 ingested"
    logged = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    assert [entry["outcome"] for entry in logged] == ["ingested", "ingested"]
    assert main(["replay", f"s3://{LANDING_BUCKET}/all-good/"]) == 0
    assert capsys.readouterr() == ("", "0 objects: nothing to do\n")


def test_ctrl_c_stops_starting_objects_and_prints_the_summary_so_far(cli, stack, new_frame) -> None:
    # Given many objects waiting in the landing bucket (the same bytes: one ingest, then quick duplicates)
    s3 = stack.client("s3")
    path = new_frame()
    total = 40
    for n in range(total):
        s3.put_object(Bucket=LANDING_BUCKET, Key=f"interrupt/{n:03d}/{path.name}", Body=path.read_bytes())
    # When the replay gets Ctrl-C as soon as its first object is done (-v: one log line per object)
    with subprocess.Popen(
        [*command("lambda-ingest"), "replay", f"s3://{LANDING_BUCKET}/interrupt/", "--concurrency", "2", "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env(),
    ) as replay:
        try:
            assert replay.stderr is not None
            # (the engine's other log lines, e.g. about the race of two copies of one file, are passed over)
            first = next(entry for entry in map(json.loads, replay.stderr) if "outcome" in entry)
            assert first["outcome"] in ("ingested", "already_ingested")
            replay.send_signal(signal.SIGINT)
            out, err = replay.communicate(timeout=60)
        finally:
            if replay.poll() is None:
                replay.kill()
                replay.communicate()
    # Then it exits 130 at once, with the summary so far on stderr and nothing on stdout (nothing went wrong)
    assert replay.returncode == 130, err
    assert out == ""
    summary = err.splitlines()[-1]
    pattern = r"interrupted: (\d+) objects: 1 ingested(?:, \d+ already ingested)?; (\d+) not started"
    counted = re.fullmatch(pattern, summary)
    assert counted, summary
    done, not_started = int(counted[1]), int(counted[2])
    assert not_started > total // 2
    assert done + not_started == total  # the objects in flight were let finish: none abandoned
    # And exactly the objects not started are still in the landing bucket, for the next replay
    assert len(landing_keys(stack, "interrupt/")) == not_started


def notification(key: str, etag: str) -> str:
    """An S3 ObjectCreated notification, as S3 writes it to the queue (key URL-encoded)."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2015-12-19T20:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": LANDING_BUCKET, "arn": f"arn:aws:s3:::{LANDING_BUCKET}"},
            "object": {"key": quote_plus(key), "eTag": etag},
        },
    }
    return json.dumps({"Records": [record]})


def dlq_bodies(stack) -> list[str]:
    """The messages visible in the dead-letter queue (left visible: moto answers with all of them)."""
    got = stack.client("sqs").receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return sorted(m["Body"] for m in got.get("Messages", []))


def test_replay_dlq_deletes_the_messages_it_processed_and_keeps_the_failures(
    cli, stack, new_frame, in_process, capsys, monkeypatch
) -> None:
    # Given two notifications in the dead-letter queue, and one message that names nothing readable
    s3, sqs = stack.client("s3"), stack.client("sqs")
    frames = [new_frame(), new_frame()]
    bodies = []
    for path in frames:
        key = f"dlq/{path.name}"
        put = s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=path.read_bytes())
        bodies.append(notification(key, put["ETag"].strip('"')))
    garbage = "this is not an S3 notification"
    for body in (*bodies, garbage):
        sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=body)
    # And the archive failing the next registration
    assert stack.archive is not None
    stack.archive.inject(status=503, method="POST", path_prefix="frames/")
    try:
        # When the dead-letter queue is re-driven
        run = cli.run("replay", "--dlq", stack.dlq_url, "--concurrency", "1")
        # Then one frame is ingested, the other (archive 503) fails; both stay queued with the garbage message,
        # which is reported as a message, not counted as an object
        assert run.returncode == 1
        assert run.stderr.splitlines()[-1] == (
            "2 objects: 1 ingested, 1 failed; 1 unreadable message (not an S3 event notification) left in the queue"
        )
        assert sorted(row[1] for row in lines(run.stdout)) == ["failed", "unreadable"]
        assert "will retry" not in run.stdout
        ingested = [path for path in frames if basename(path) in archive_frames(stack)]
        assert len(ingested) == 1
        [left] = [body for body in bodies if frames[bodies.index(body)] not in ingested]
        assert dlq_bodies(stack) == sorted([left, garbage])

        # When it is re-driven again, with the archive back (in-process; moto needs no long poll to drain)
        monkeypatch.setattr(cli_module, "DLQ_DRAIN_WAIT_SECONDS", 0)
        assert main(["replay", "--dlq", stack.dlq_url]) == 1
        # Then the other frame is ingested too; only the garbage stays
        assert capsys.readouterr().err.splitlines()[-1].startswith("1 object: 1 ingested; 1 unreadable message")
        assert all(basename(path) in archive_frames(stack) for path in frames)
        assert dlq_bodies(stack) == [garbage]
    finally:
        stack.archive.clear_faults()
        sqs.purge_queue(QueueUrl=stack.dlq_url)


@pytest.mark.parametrize(
    "argv",
    [
        ["replay"],
        ["replay", f"s3://{LANDING_BUCKET}", "--dlq", "http://queue"],
        ["replay", LANDING_BUCKET],
        ["replay", f"s3://{LANDING_BUCKET}", "--concurrency", "0"],
        ["replay", "s3://"],
        ["replay", "--dlq", "not-a-url"],
    ],
    ids=["nothing", "both", "not-s3", "zero-concurrency", "no-bucket", "dlq-not-a-url"],
)
def test_replay_usage_errors_exit_2(argv, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "usage: lambda-ingest replay" in err
    assert err.splitlines()[-1].startswith("lambda-ingest replay: error: ")


def test_replay_of_a_missing_bucket_is_a_configuration_error(in_process, capsys) -> None:
    assert main(["replay", "s3://no-such-landing-bucket/"]) == 2
    assert capsys.readouterr() == (
        "",
        "lambda-ingest: error: no such bucket no-such-landing-bucket: check its name "
        "(and S3_ENDPOINT_URL for a local S3)\n",
    )


def test_an_empty_dead_letter_queue_says_so(stack, in_process, capsys, monkeypatch) -> None:
    monkeypatch.setattr(cli_module, "DLQ_DRAIN_WAIT_SECONDS", 0)
    assert main(["replay", "--dlq", stack.dlq_url]) == 0
    assert capsys.readouterr() == ("", "the dead-letter queue is empty: nothing to replay\n")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_only() -> None:
    terminal, log, out = Terminal(), io.StringIO(), io.StringIO()
    for stream in (terminal, log):
        bar = Progress(2, "replay", stream)
        bar.step("ingested")
        bar.println(out, "s3://b/k\trejected\treason")
        bar.step("rejected")
    assert "\rreplay [###############...............] 1/2 ingested" in terminal.getvalue()
    assert terminal.getvalue().endswith("2/2 rejected                      \n")
    assert log.getvalue() == ""
    assert out.getvalue() == "s3://b/k\trejected\treason\n" * 2
