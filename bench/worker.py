"""One measured ingest (or measurement) per process: `python -m bench.worker MODE ... --out result.json`.

A fresh process per ingest, so peak RSS (`VmHWM`) belongs to that ingest alone. Each process is a
sandbox's life in small: import the modules (timed), a first invocation on a small warm-up frame (timed:
the cold-start cost of lazy imports and client creation), then, after the parent has emptied the archive
again (`--notify-fd` / stdin handshake), the measured invocation on the benchmark frame, warm as most
invocations of a busy function are. Cold import alone is measured by `import` mode.

Modes:
  ours      lambda_ingest.handler.handler() on the S3 ObjectCreated notification of the landing object, as
            the deployed stack delivers it (inside an SQS message, first receive)
  baseline  what a function built on ocs_ingester 3.2.0 does: download the object into memory, then
            ocs_ingester.ingester.upload_file_and_ingest_to_archive(fileobj, path=key)
  md5       lambda_ingest.store.stream_md5() against a plain get_object() read loop of the same object
  import    cold import of the handler module (or of the baseline's modules)

Configuration comes from the environment the parent sets (see bench.run.child_environment), exactly as
a deployed function gets it. Only the standard library is imported at module level, so `import` mode
measures a cold import.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import select
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, unquote_plus

if TYPE_CHECKING:
    from bench.traffic import Traffic

Invoke = Callable[[str, int, str, bool], dict[str, Any]]
"""invoke(key, size, etag, multipart) -> details of the ingest (stages, version id, md5, frame id)."""


def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    # VmHWM, the high-water mark of this process's own memory: ru_maxrss would not do, as Linux carries
    # it across fork and exec, so a child would report the (large) parent's RSS at spawn time.
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _cpu() -> float:
    return time.process_time()  # user + system time of every thread, at a finer grain than os.times()


def s3_event(bucket: str, key: str, size: int, etag: str, multipart: bool) -> dict[str, Any]:
    """An S3 ObjectCreated notification as S3 sends it (key URL-encoded, unversioned landing bucket)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "eventName": "ObjectCreated:CompleteMultipartUpload" if multipart else "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:BENCH"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "BENCH0000000000", "x-amz-id-2": "bench"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "lambda-ingest",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "BENCH"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag.strip('"'),
                        "sequencer": "0055AED6DCD90281E5",
                    },
                },
            }
        ]
    }


def _handshake(args: argparse.Namespace) -> None:
    """Tell the parent the warm-up is done; wait until it has emptied the archive again."""
    if args.notify_fd < 0:
        return
    os.write(args.notify_fd, b"warm\n")
    os.close(args.notify_fd)
    if sys.stdin.readline().strip() != "go":
        raise RuntimeError("the parent did not answer the handshake")


def _measured(args: argparse.Namespace, traffic: Traffic, invoke: Invoke) -> dict[str, Any]:
    """Warm-up invocation, handshake, then the measured invocation with fresh counters."""
    start = time.perf_counter()
    invoke(args.warm_key, args.warm_size, args.warm_etag, False)
    first_s = time.perf_counter() - start
    _handshake(args)
    traffic.reset()
    rss_before, cpu0 = _rss_now(), _cpu()
    start = time.perf_counter()
    details = invoke(args.key, args.size, args.etag, args.multipart)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "cpu_s": _cpu() - cpu0,
        "first_invocation_s": first_s,
        "rss_before_bytes": rss_before,
        "peak_rss_bytes": _peak_rss(),
        "traffic": traffic.as_dict(),
        **details,
    }


def _lazy_init() -> None:
    """The function's init as it was before issue 14: nothing loaded ahead of the first record."""
    from lambda_ingest import snapstart

    snapstart.prepare = lambda: None  # type: ignore[assignment]


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    from bench.traffic import install

    traffic = install()
    if args.lazy_init:
        _lazy_init()
    start = time.perf_counter()
    from lambda_ingest.handler import handler

    import_s = time.perf_counter() - start
    from lambda_ingest.context import LocalContext

    context = LocalContext(function_name="lambda-ingest-bench")

    def invoke(key: str, size: int, etag: str, multipart: bool) -> dict[str, Any]:
        # The deployed path: the S3 notification inside an SQS message, first receive. The handler's one
        # outcome log line carries what it did (the SQS response holds only the failures).
        from lambda_ingest.local.demo import OutcomeLog
        from lambda_ingest.local.stack import sqs_event

        body = json.dumps(s3_event(args.bucket, key, size, etag, multipart))
        message = {
            "MessageId": f"bench-{key}",
            "ReceiptHandle": "bench",
            "Body": body,
            "Attributes": {"ApproximateReceiveCount": "1"},
            "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
        }
        with OutcomeLog() as log, contextlib.redirect_stdout(io.StringIO()):
            response = handler(sqs_event([message], "arn:aws:sqs:us-east-1:000000000000:bench"), context)
        outcomes = [o for o in log.outcomes() if o.get("key") == key]
        if response.get("batchItemFailures") or len(outcomes) != 1 or outcomes[0].get("outcome") != "ingested":
            raise RuntimeError(f"the handler did not ingest {key}: {response!r} {outcomes!r}")
        outcome = outcomes[0]
        return {
            "stages_ms": outcome.get("durations_ms", {}),
            "version_id": outcome.get("version_id"),
            "md5": outcome.get("md5"),
            "frame_id": outcome.get("frame_id"),
        }

    return {"import_s": import_s, **_measured(args, traffic, invoke)}


def run_baseline(args: argparse.Namespace) -> dict[str, Any]:
    from bench.traffic import install

    traffic = install()
    start = time.perf_counter()
    import boto3
    from boto3.s3.transfer import TransferConfig
    from ocs_ingester import ingester

    import_s = time.perf_counter() - start
    clients: list[Any] = []

    def invoke(key: str, size: int, etag: str, multipart: bool) -> dict[str, Any]:
        start = time.perf_counter()
        if not clients:  # created on the first invocation and kept, as a function would
            endpoint, region = os.environ["S3_ENDPOINT_URL"], os.environ.get("AWS_DEFAULT_REGION")
            clients.append(boto3.client("s3", endpoint_url=endpoint, region_name=region))
        fileobj = io.BytesIO()  # in memory, as ocs_ingester itself handles files (Lambda's /tmp is 512 MB)
        # boto3's defaults: ranged GETs of 8 MiB on up to 10 connections (the local S3 serves a range in
        # time proportional to it, lambda_ingest.local.s3).
        clients[0].download_fileobj(args.bucket, key, fileobj, Config=TransferConfig())
        fileobj.seek(0)
        download_ms = (time.perf_counter() - start) * 1000
        record = ingester.upload_file_and_ingest_to_archive(fileobj, path=key)
        total_ms = (time.perf_counter() - start) * 1000
        if not record.get("frameid"):
            raise RuntimeError(f"ocs_ingester did not register {key}: {record.get('basename')!r}")
        version = (record.get("version_set") or [{}])[0]
        return {
            "stages_ms": {"download": round(download_ms, 3), "ingest": round(total_ms - download_ms, 3)},
            "version_id": version.get("key"),
            "md5": version.get("md5"),
            "frame_id": record.get("frameid"),
        }

    return {"import_s": import_s, **_measured(args, traffic, invoke)}


def run_md5(args: argparse.Namespace) -> dict[str, Any]:
    from bench.traffic import install

    traffic = install()
    from lambda_ingest import clients, store

    obj = store.head(args.bucket, args.key)
    chunk = store.MD5_CHUNK_SIZE
    md5_s: list[float] = []
    plain_s: list[float] = []
    digest = ""

    def md5_once() -> None:
        nonlocal digest
        start = time.perf_counter()
        digest = store.stream_md5(obj)
        md5_s.append(time.perf_counter() - start)

    def plain_once() -> None:
        start = time.perf_counter()
        # Same client, same chunk size: the only difference is the hashing.
        body = clients.s3().get_object(Bucket=obj.bucket, Key=obj.key)["Body"]
        for _ in iter(lambda: body.read(chunk), b""):
            pass
        plain_s.append(time.perf_counter() - start)

    for i in range(args.rounds):
        # Alternate the order so neither side always runs on a warmer server.
        for step in (md5_once, plain_once) if i % 2 == 0 else (plain_once, md5_once):
            step()
    # md5 alone on this CPU, from memory: the ceiling of any md5 stream, however well it overlaps the reads.
    buffer = bytes(chunk) * 8
    hash_s = []
    for _ in range(3):
        start = time.perf_counter()
        hashlib.md5(buffer, usedforsecurity=False).hexdigest()
        hash_s.append(time.perf_counter() - start)
    if args.expect_md5 and digest != args.expect_md5:
        raise RuntimeError(f"stream_md5 gave {digest}, the file's md5 is {args.expect_md5}")
    return {
        "md5_s": md5_s,
        "plain_s": plain_s,
        "size": obj.size,
        "md5": digest,
        "chunk": chunk,
        "hash_only_rate": len(buffer) / min(hash_s),
        "peak_rss_bytes": _peak_rss(),
        "traffic": traffic.as_dict(),
    }


def run_copy(args: argparse.Namespace) -> dict[str, Any]:
    """One CopyObject against parallel UploadPartCopy of the same object (as the settings size the parts)."""
    from lambda_ingest import store
    from lambda_ingest.settings import get_settings

    obj = store.head(args.bucket, args.key)
    attrs = {"content_type": "application/octet-stream", "content_disposition": "attachment"}
    settings = get_settings()
    part = store.part_size(obj.size, store.COPY_PART_SIZE, settings.copy_concurrency)
    archive = settings.bucket
    times: dict[str, list[float]] = {"copy_object_s": [], "parts_s": []}
    for _ in range(args.rounds):
        for name, threshold in (("copy_object_s", store.MAX_COPY_OBJECT_SIZE), ("parts_s", 0)):
            store.COPY_MULTIPART_THRESHOLD = threshold  # this worker process measures both paths
            start = time.perf_counter()
            version = store.copy_to_archive(obj, archive, args.key, storage_class="STANDARD", **attrs)
            times[name].append(time.perf_counter() - start)
            store.delete_version(archive, args.key, version)
    return {
        **{name: min(values) for name, values in times.items()},
        "parts": -(-obj.size // part),
        "part_size": part,
        "concurrency": settings.copy_concurrency,
    }


def run_consume(args: argparse.Namespace) -> dict[str, Any]:
    """One function instance of the burst: receive from SQS, invoke the handler, note when each key is done."""
    import boto3

    if args.lazy_init:
        _lazy_init()
    from lambda_ingest.context import LocalContext
    from lambda_ingest.handler import handler
    from lambda_ingest.local.stack import sqs_event

    sqs = boto3.client("sqs", endpoint_url=os.environ["BENCH_SQS_ENDPOINT"], region_name="us-east-1")
    context = LocalContext(function_name="lambda-ingest-burst")
    done: dict[str, float] = {}
    failed = 0
    idle = 0
    stopping = False  # the parent has uploaded every frame: stop once the queue stays empty
    _handshake(args)  # warm (imported) before the burst starts
    while not stopping or idle < args.idle_polls:
        if not stopping and select.select([sys.stdin], [], [], 0)[0]:
            stopping = sys.stdin.readline().strip() in ("stop", "")
            idle = 0
        messages = sqs.receive_message(
            QueueUrl=args.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            idle += 1
            continue
        idle = 0
        with contextlib.redirect_stdout(io.StringIO()):
            response = handler(sqs_event(messages, args.queue_arn), context)
        finished = time.time()
        failures = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        failed += len(failures)
        for message in messages:
            if message["MessageId"] in failures:
                continue
            for record in json.loads(message["Body"]).get("Records", []):
                done[unquote_plus(record["s3"]["object"]["key"])] = finished
            sqs.delete_message(QueueUrl=args.queue, ReceiptHandle=message["ReceiptHandle"])
    return {"done": done, "failed": failed, "peak_rss_bytes": _peak_rss()}


def run_import(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    if args.target == "ours-lazy":
        _lazy_init()
    if args.target in ("ours", "ours-lazy"):
        import lambda_ingest.handler  # noqa: F401
    else:
        import boto3  # noqa: F401
        import ocs_ingester.ingester  # noqa: F401
    return {"import_s": time.perf_counter() - start, "peak_rss_bytes": _peak_rss()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("ours", "baseline", "md5", "import", "copy", "consume"))
    parser.add_argument("--bucket", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--etag", default="")
    parser.add_argument("--multipart", action="store_true")
    parser.add_argument("--warm-key", default="")
    parser.add_argument("--warm-size", type=int, default=0)
    parser.add_argument("--warm-etag", default="")
    parser.add_argument("--notify-fd", type=int, default=-1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--expect-md5", default="")
    parser.add_argument("--target", choices=("ours", "ours-lazy", "baseline"), default="ours")
    parser.add_argument("--lazy-init", action="store_true", help="init as before issue 14 (nothing preloaded)")
    parser.add_argument("--queue", default="")
    parser.add_argument("--queue-arn", default="")
    parser.add_argument("--idle-polls", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    runners = {
        "ours": run_ours,
        "baseline": run_baseline,
        "md5": run_md5,
        "import": run_import,
        "copy": run_copy,
        "consume": run_consume,
    }
    try:
        result: dict[str, Any] = {"ok": True, **runners[args.mode](args)}
    except Exception as exc:
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    with open(args.out, "w") as fh:
        json.dump(result, fh)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
