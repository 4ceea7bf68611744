"""End-to-end latency of a burst: upload -> S3 notification -> SQS -> N function instances -> registered.

The frames are uploaded one after another to a landing bucket that notifies an SQS queue (moto delivers
S3 notifications to its own SQS, as the deployed stack's bucket does); `workers` child processes
(`bench.worker consume`, each a function instance, warm before the burst) receive batches of up to 10
messages, invoke the handler on the SQS event as Lambda's event source mapping would, and note when each
object's batch returned. A frame's latency is that moment minus the end of its upload (one clock: the same
machine). S3 is reached through the S3 model (bench.model); SQS, DynamoDB and the archive on loopback.
Frames above 8 MB are uploaded in parts, as boto3 and the AWS CLI do by default.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from bench.run import Bench

BURST_BUCKET = "bench-burst"
QUEUE = "bench-burst"
MULTIPART_ABOVE = 8 * 1024**2  # boto3's and the AWS CLI's default multipart threshold
WAIT_LIMIT = 3600  # seconds


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def burst(bench: Bench, count: int, size: int, workers: int) -> dict[str, Any]:
    from bench.run import REPO, Case, child_environment, size_label

    sqs = _sqs(bench)
    bench.s3.create_bucket(Bucket=BURST_BUCKET)
    url = sqs.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bench.s3.put_bucket_notification_configuration(
        Bucket=BURST_BUCKET,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    bench.reset_archive()
    env = child_environment(bench.endpoint("model"), bench.archive.api_root, bench.token, "ours")
    env["BENCH_SQS_ENDPOINT"] = bench.server.endpoint_url
    procs = []
    try:
        for i in range(workers):
            out = bench.work / f"burst-{i}.json"
            notify_r, notify_w = os.pipe()
            cmd = [sys.executable, "-m", "bench.worker", "consume", "--queue", url, "--queue-arn", arn]
            cmd += ["--notify-fd", str(notify_w), "--out", str(out)]
            log = (bench.work / f"burst-{i}.log").open("wb")
            proc = subprocess.Popen(
                cmd, env=env, cwd=REPO, stdin=subprocess.PIPE, stdout=log,
                stderr=subprocess.STDOUT, pass_fds=(notify_w,),
            )  # fmt: skip
            os.close(notify_w)
            procs.append((proc, os.fdopen(notify_r, "rb"), out, log))
        for proc, notify, _, _ in procs:  # every instance warm (imported, first poll ready) before the burst
            ready, _, _ = select.select([notify], [], [], WAIT_LIMIT)
            if not ready or notify.readline() != b"warm\n":
                raise RuntimeError("a burst worker did not start")
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        uploaded: dict[str, float] = {}
        released: set[str] = set()
        began = time.time()
        for _ in range(count):
            frame = bench.make_frame(Case(size, ".fits.fz", "single"))
            _upload(bench, frame.path, frame.key, multipart=frame.size > MULTIPART_ABOVE)
            uploaded[frame.key] = time.time()
            frame.path.unlink(missing_ok=True)
            _release_registered(bench, released)
        for proc, *_ in procs:  # no more uploads: drain the queue, then stop
            assert proc.stdin is not None
            proc.stdin.write(b"stop\n")
            proc.stdin.close()
        done: dict[str, float] = {}
        failed, peak = 0, 0
        for proc, notify, out, log in procs:
            proc.wait(timeout=WAIT_LIMIT)
            notify.close()
            log.close()
            result = json.loads(out.read_text()) if out.exists() else {"ok": False}
            if not result.get("ok"):
                raise RuntimeError(f"burst worker failed: {result.get('error')}")
            done.update({unquote_plus(k): v for k, v in result["done"].items()})
            failed += result["failed"]
            peak = max(peak, result["peak_rss_bytes"])
    finally:
        for proc, *_ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    registered = len(bench.archive.frames())
    latencies = [done[k] - t for k, t in uploaded.items() if k in done]
    bench.clean_buckets()
    summary = {
        "count": count,
        "size": size,
        "workers": workers,
        "ingested": len(latencies),
        "registered": registered,
        "retried_deliveries": failed,
        "upload_s": max(uploaded.values()) - began if uploaded else 0.0,
        "last_done_s": max(done.values()) - began if done else 0.0,
        "p50_s": _percentile(latencies, 0.50),
        "p95_s": _percentile(latencies, 0.95),
        "max_s": max(latencies, default=float("nan")),
        "mean_s": statistics.fmean(latencies) if latencies else float("nan"),
        "peak_rss_bytes": peak,
    }
    bench.progress(
        f"burst {count} x {size_label(size)}: p50 {summary['p50_s']:.2f} s, p95 {summary['p95_s']:.2f} s, "
        f"{len(latencies)}/{count} ingested"
    )
    if len(latencies) != count or registered != count:
        raise RuntimeError(f"burst: {len(latencies)} of {count} ingested, {registered} registered")
    return summary


def _release_registered(bench: Bench, released: set[str]) -> None:
    """Delete the archive copies of frames already registered (the registrations stay, and are counted).

    The local S3 holds every object in this process's memory: without this, a burst of 20 frames of 1 GB
    held 20 GB of archive copies at the end. Nothing reads them again; a burst measures upload to registered.
    """
    from bench.run import ARCHIVE

    registered = {v["key"] for v in bench.archive.versions()} - released
    if not registered:
        return
    listing = bench.s3.list_object_versions(Bucket=ARCHIVE).get("Versions", [])
    for version in listing:
        if version["VersionId"] in registered:
            bench.s3.delete_object(Bucket=ARCHIVE, Key=version["Key"], VersionId=version["VersionId"])
            released.add(version["VersionId"])


def _sqs(bench: Bench) -> Any:
    import boto3

    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
    return session.client("sqs", endpoint_url=bench.server.endpoint_url)


def _upload(bench: Bench, path: Any, key: str, multipart: bool) -> None:
    if not multipart:
        with path.open("rb") as fh:
            bench.s3.put_object(Bucket=BURST_BUCKET, Key=key, Body=fh)
        return
    upload_id = bench.s3.create_multipart_upload(Bucket=BURST_BUCKET, Key=key)["UploadId"]
    parts = []
    with path.open("rb") as fh:
        for number, chunk in enumerate(iter(lambda: fh.read(MULTIPART_ABOVE), b""), 1):
            etag = bench.s3.upload_part(
                Bucket=BURST_BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
            )["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
    bench.s3.complete_multipart_upload(
        Bucket=BURST_BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
