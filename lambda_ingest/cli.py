"""`lambda-ingest` command line: ingest, inspect, replay, demo; plus ocs_ingester's `ocs_ingest_frame`.

Exit codes: 0 when every file ended ingested or already ingested (for `--check-only`: 0 when the archive
holds the file, 1 when not), 1 when any file failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TextIO

from lambda_ingest.errors import IngestError, NotIngestedError, PermanentError


class Progress:
    """A one-line progress bar on stderr (hand-written: a dependency for one line is not worth it)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr

    def step(self, note: str = "") -> None:
        self.done += 1
        width = 30
        filled = width * self.done // max(self.total, 1)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {note[:40]:<40}"
        )
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _apply_common(args: argparse.Namespace) -> None:
    from lambda_ingest.settings import override_settings

    override_settings(
        api_root=getattr(args, "api_root", None),
        auth_token=getattr(args, "auth_token", None),
        bucket=getattr(args, "bucket", None),
        ingester_process_name=getattr(args, "process_name", None),
        # Metrics from a short-lived command are sent before it exits (as ocs_ingester's script does).
        submit_metrics_asynchronously=False,
    )


def _parse_metadata(pairs: Iterable[str]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--metadata expects KEY=VALUE, got {pair!r}")
        metadata[key] = value
    return metadata


def cmd_ingest(args: argparse.Namespace, out: TextIO) -> int:
    from lambda_ingest.ingest import ingest_source
    from lambda_ingest.observability import opentsdb
    from lambda_ingest.sources import LocalFile

    _apply_common(args)
    metadata = _parse_metadata(args.metadata or [])
    failed = 0
    for path in args.paths:
        try:
            with open(path, "rb") as fileobj:
                result = ingest_source(LocalFile(fileobj, path), file_metadata=metadata, check_only=args.check_only)
        except (IngestError, OSError) as exc:
            failed += 1
            out.write(f"{path}\tfailed\t{exc}\n")
            continue
        if args.check_only:
            exists = result.status == "already_ingested"
            out.write(f"{path}\t{exists}\n")
            failed += 0 if exists else 1
            continue
        opentsdb.record(result)
        out.write(f"{path}\t{result.status}\t{result.url or ''}\n")
    return 1 if failed else 0


def ocs_ingest_frame(argv: Sequence[str] | None = None) -> None:
    """ocs_ingester's `ocs_ingest_frame PATH [--api-root] [--auth-token] [--bucket] [--process-name]
    [--check-only]`: prints the frame's URL (or True/False with --check-only). Unlike ocs_ingester it exits
    non-zero whenever the file was not ingested (an already-ingested file is success, exit 0)."""
    parser = argparse.ArgumentParser(prog="ocs_ingest_frame", description="Upload a FITS file to the science archive.")
    parser.add_argument("path", help="Path to file")
    _add_archive_flags(parser)
    parser.add_argument("--check-only", action="store_true", help="only check whether the archive holds the file")
    args = parser.parse_args(argv)
    from lambda_ingest.ingest import ingest_source
    from lambda_ingest.observability import opentsdb
    from lambda_ingest.sources import LocalFile

    _apply_common(args)
    try:
        with open(args.path, "rb") as fileobj:
            result = ingest_source(LocalFile(fileobj, args.path), check_only=args.check_only)
    except (IngestError, OSError) as exc:
        sys.stdout.write(f"Exception uploading file: {exc}\n")
        raise SystemExit(1) from None
    if args.check_only:
        exists = result.status == "already_ingested"
        sys.stdout.write(f"{exists}\n")
        raise SystemExit(0 if exists else 1)
    opentsdb.record(result)
    sys.stdout.write(f"{result.url or ''}\n")
    raise SystemExit(0)


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    """Print the record and canonical key a file would get; writes nothing anywhere."""
    from lambda_ingest import store
    from lambda_ingest.ingest import read_record, storage_class_for
    from lambda_ingest.settings import get_settings
    from lambda_ingest.sources import LandingObject, LocalFile

    _apply_common(args)
    metadata = _parse_metadata(args.metadata or [])
    try:
        if args.target.startswith("s3://"):
            bucket, _, key = args.target[5:].partition("/")
            record, read = read_record(LandingObject(store.head(bucket, key)), metadata)
        else:
            with open(args.target, "rb") as fileobj:
                record, read = read_record(LocalFile(fileobj, args.target), metadata)
    except (IngestError, OSError) as exc:
        out.write(f"{args.target}: {exc}\n")
        return 1
    settings = get_settings()
    report = {
        "archive_key": f"s3://{settings.bucket}/{record.archive_key}",
        "endpoint": "thumbnails/" if record.is_thumbnail else "frames/",
        "content_type": record.content_type,
        "storage_class": storage_class_for(record, settings),
        "header_bytes_read": read,
        "record": record.payload,
    }
    out.write(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return 0


def _run_all(
    items: Sequence[Any], work: Callable[[Any], dict[str, Any]], concurrency: int, label: str, out: TextIO
) -> Counter[str]:
    counts: Counter[str] = Counter()
    progress = Progress(len(items), label)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(work, item): item for item in items}
        for future in as_completed(futures):
            try:
                outcome = future.result()["outcome"]
            except Exception as exc:  # transient: left for a later run
                outcome = "failed"
                out.write(f"\n{futures[future]}: {exc}\n")
            counts[outcome] += 1
            progress.step(outcome)
    return counts


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    """Ingest objects already in the landing bucket, or re-drive the dead-letter queue."""
    from lambda_ingest import clients, events
    from lambda_ingest.outcomes import processor

    _apply_common(args)
    if args.dlq:
        return _replay_dlq(args, out)
    if not args.target or not args.target.startswith("s3://"):
        out.write("replay needs s3://bucket[/prefix] or --dlq QUEUE_URL\n")
        return 2
    bucket, _, prefix = args.target[5:].partition("/")
    refs = []
    for page in clients.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):
                refs.append(events.ObjectRef(bucket, item["Key"], etag=item.get("ETag", "").strip('"') or None))
    counts = _run_all(refs, processor().process, args.concurrency, "replay", out)
    return _summary(counts, out)


def _replay_dlq(args: argparse.Namespace, out: TextIO) -> int:
    from lambda_ingest import clients, events
    from lambda_ingest.outcomes import processor

    sqs = clients.client("sqs")
    messages = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=args.dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=900
        ).get("Messages", [])
        if not batch:
            break
        messages.extend(batch)

    def work(message: dict[str, Any]) -> dict[str, Any]:
        outcomes = [processor().process(ref) for ref in events.from_message_body(message["Body"])]
        # Only a message whose every object reached an outcome leaves the DLQ.
        sqs.delete_message(QueueUrl=args.dlq, ReceiptHandle=message["ReceiptHandle"])
        return {"outcome": outcomes[0]["outcome"] if len(outcomes) == 1 else "ingested" if outcomes else "skipped"}

    counts = _run_all(messages, work, args.concurrency, "dlq", out)
    return _summary(counts, out)


def _summary(counts: Counter[str], out: TextIO) -> int:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    out.write(f"{total} objects: {parts or 'nothing to do'}\n")
    return 1 if counts.get("failed") else 0


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from lambda_ingest.local.demo import run_demo

    return run_demo(frames_dir=args.frames, keep=args.keep, out=out, quick=args.quick)


def _add_archive_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-root", help="Science Archive API root (API_ROOT)")
    parser.add_argument("--auth-token", help="archive API token (AUTH_TOKEN)")
    parser.add_argument("--bucket", help="archive bucket (BUCKET)")
    parser.add_argument("--process-name", help="ingester_process_name tag of metrics (INGESTER_PROCESS_NAME)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambda-ingest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="ingest local files into the archive bucket and register them")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    _add_archive_flags(ingest)
    ingest.add_argument(
        "--check-only",
        action="store_true",
        help="only report whether the archive holds each file (exit 0 if all do, 1 if not)",
    )
    ingest.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="metadata for non-FITS files")
    ingest.set_defaults(func=cmd_ingest)

    inspect = sub.add_parser("inspect", help="dry run: print the archive record and canonical key")
    inspect.add_argument("target", metavar="PATH|s3://bucket/key")
    inspect.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    inspect.add_argument("--bucket", help="archive bucket the key is shown in (BUCKET)")
    inspect.set_defaults(func=cmd_inspect)

    replay = sub.add_parser("replay", help="ingest objects already in the landing bucket, or re-drive the DLQ")
    replay.add_argument("target", nargs="?", metavar="s3://landing-bucket[/prefix]")
    replay.add_argument("--dlq", metavar="QUEUE_URL", help="re-drive the dead-letter queue instead")
    replay.add_argument("--concurrency", type=int, default=4)
    _add_archive_flags(replay)
    replay.set_defaults(func=cmd_replay)

    demo = sub.add_parser("demo", help="run the whole flow on an embedded local stack (no AWS, no Docker)")
    demo.add_argument("--frames", metavar="DIR", help="also ingest the real frames in DIR")
    demo.add_argument("--keep", action="store_true", help="leave the stack running and print how to reach it")
    demo.add_argument("--quick", action="store_true", help="fewer, smaller sample frames")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, sys.stdout))
    except PermanentError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except NotIngestedError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except IngestError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
