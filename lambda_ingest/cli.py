"""`lambda-ingest` command line: ingest, inspect, replay, demo; plus ocs_ingester's `ocs_ingest_frame`.

Output: results on stdout, one tab-separated line per file or object (`<name>\\t<status>\\t<url|key|reason>`),
then a summary; progress bars and (with `-v`) the engine's structured log lines on stderr.

Exit codes, every subcommand:

    0    every file ended ingested or already ingested (replay: or skipped, e.g. deleted meanwhile);
         with --check-only: the archive holds every file
    1    a file was rejected or failed (unlike ocs_ingester, which exits 0 on some failures);
         with --check-only: a file is not in the archive, or the check itself failed
    2    usage error (bad arguments)
    130  interrupted
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TextIO

from lambda_ingest.errors import IngestError, RejectedError

# Status words printed in the second column; the engine's outcomes plus the command line's own.
INGESTED = "ingested"
ALREADY = "already_ingested"
NOT_INGESTED = "not_ingested"  # --check-only: the archive does not hold the file
REJECTED = "rejected"  # permanent: the file cannot be ingested as it is
FAILED = "failed"  # anything else (archive or S3 unavailable, unreadable file); worth retrying
SUCCESS = frozenset({INGESTED, ALREADY, "skipped"})


class Progress:
    """A one-line progress bar on stderr, drawn only on a terminal (logs and CI get the summary only)."""

    WIDTH = 30

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())

    def _draw(self, note: str = "") -> None:
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = f"{'#' * filled}{'.' * (self.WIDTH - filled)}"
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {note[:30]:<30}")
        self.stream.flush()

    def step(self, note: str = "") -> None:
        self.done += 1
        if self.live:
            self._draw(note)
            if self.done >= self.total:
                self.stream.write("\n")
                self.stream.flush()

    def println(self, out: TextIO, text: str) -> None:
        """Write a result line without tearing the bar (cleared first, redrawn after)."""
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()
        out.write(text + "\n")
        out.flush()
        if self.live and self.done < self.total:
            self._draw()


@contextlib.contextmanager
def _engine_output(verbose: bool) -> Iterator[None]:
    """Keep stdout for results while the engine works.

    The engine's structured log lines go to stderr (only with -v: the command line prints its own lines),
    and CloudWatch EMF blobs, which Powertools prints to stdout and which mean nothing outside Lambda, are
    dropped. (astropy's header fix-up warnings are silenced where records are built, under a lock that
    keeps it safe across replay's worker threads.)
    """
    from lambda_ingest.observability import logger

    handler = logger.registered_handler
    previous_stream = handler.setStream(sys.stderr)
    previous_level = logger.log_level
    logger.setLevel(logging.INFO if verbose else logging.CRITICAL)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        logger.setLevel(previous_level)
        handler.setStream(previous_stream)


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


def _metadata_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _classify(exc: BaseException) -> str:
    return REJECTED if isinstance(exc, RejectedError) else FAILED


def _reason(exc: BaseException) -> str:
    if isinstance(exc, IngestError):
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


# --- ingest ----------------------------------------------------------------------------------------------


def _check_one(path: str) -> tuple[str, str]:
    """(status, url) of a local file for --check-only: is a file with these bytes in the archive?"""
    from lambda_ingest.compat import find_existing
    from lambda_ingest.sources import LocalFile

    with open(path, "rb") as fileobj:
        existing = find_existing(LocalFile(fileobj, path))
    return (ALREADY, existing.url or "") if existing else (NOT_INGESTED, "")


def _ingest_one(path: str, metadata: dict[str, str]) -> tuple[str, str]:
    from lambda_ingest.ingest import ingest_source
    from lambda_ingest.observability import opentsdb
    from lambda_ingest.sources import LocalFile

    with open(path, "rb") as fileobj:
        result = ingest_source(LocalFile(fileobj, path), file_metadata=metadata or None)
    opentsdb.record(result)
    return result.status, result.url or ""


def cmd_ingest(args: argparse.Namespace, out: TextIO) -> int:
    """Upload local files to the archive bucket and register them (ocs_ingester's job, several at once)."""
    _apply_common(args)
    metadata = dict(args.metadata or [])
    counts: Counter[str] = Counter()
    with _engine_output(args.verbose):
        for path in args.paths:
            try:
                status, detail = _check_one(path) if args.check_only else _ingest_one(path, metadata)
            except Exception as exc:
                status, detail = _classify(exc), _reason(exc)
            counts[status] += 1
            out.write(f"{path}\t{status}\t{detail}\n")
            out.flush()
    if len(args.paths) > 1:
        sys.stderr.write(_summary_line(counts, "file") + "\n")
    return 0 if set(counts) <= SUCCESS else 1


def ocs_ingest_frame(argv: Sequence[str] | None = None) -> None:
    """ocs_ingester's `ocs_ingest_frame PATH [--api-root] [--auth-token] [--bucket] [--process-name]
    [--check-only]`: prints the frame's URL (or True/False with --check-only), as ocs_ingester did.

    Unlike ocs_ingester it exits 1 whenever the file was not ingested; a file already in the archive is a
    success (its URL is printed, exit 0).
    """
    parser = argparse.ArgumentParser(
        prog="ocs_ingest_frame",
        description=(
            "Upload a FITS file to the science archive of an observatory control system and print its URL. "
            "--check-only only checks whether the archive holds the file (by md5)."
        ),
    )
    parser.add_argument("path", help="Path to file")
    _add_archive_flags(parser)
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="only check whether the archive holds the file: prints True (exit 0) or False (exit 1)",
    )
    args = parser.parse_args(argv)
    out = sys.stdout
    _apply_common(args)
    with _engine_output(verbose=False):
        try:
            if args.check_only:
                status, _ = _check_one(args.path)
            else:
                status, url = _ingest_one(args.path, {})
        except Exception as exc:
            prefix = "" if args.check_only else "Exception uploading file: "
            out.write(f"{prefix}{exc}\n")
            raise SystemExit(1) from None
    if args.check_only:
        out.write(f"{status == ALREADY}\n")
        raise SystemExit(0 if status == ALREADY else 1)
    out.write(f"{url}\n")
    raise SystemExit(0)


# --- inspect ---------------------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    """Print the record and canonical key a file would get; writes nothing anywhere."""
    import json

    from lambda_ingest import store
    from lambda_ingest.ingest import read_record, storage_class_for
    from lambda_ingest.settings import get_settings
    from lambda_ingest.sources import LandingObject, LocalFile

    _apply_common(args)
    metadata = dict(args.metadata or [])
    try:
        if args.target.startswith("s3://"):
            bucket, _, key = args.target[len("s3://") :].partition("/")
            if not bucket or not key:
                out.write(f"{args.target}\t{FAILED}\texpected s3://bucket/key\n")
                return 2
            record, read = read_record(LandingObject(store.head(bucket, key)), metadata or None)
        else:
            with open(args.target, "rb") as fileobj:
                record, read = read_record(LocalFile(fileobj, args.target), metadata or None)
    except Exception as exc:
        out.write(f"{args.target}\t{_classify(exc)}\t{_reason(exc)}\n")
        return 1
    settings = get_settings()
    fields = {k: v for k, v in record.payload.items() if k != "headers"}
    report = {
        "archive_key": f"s3://{settings.bucket}/{record.archive_key}",
        "endpoint": "thumbnails/" if record.is_thumbnail else "frames/",
        "content_type": record.content_type,
        "content_disposition": record.content_disposition,
        "storage_class": storage_class_for(record, settings),
        "header_bytes_read": read,
        # The fields ocs_archive mapped first; the cleaned headers (long) last.
        "record": {**fields, "headers": record.payload.get("headers")},
    }
    out.write(json.dumps(report, indent=2) + "\n")
    return 0


# --- replay ----------------------------------------------------------------------------------------------


def _run_all(
    items: Sequence[Any],
    work: Callable[[Any], list[dict[str, Any]]],
    name: Callable[[Any], str],
    concurrency: int,
    label: str,
    out: TextIO,
) -> Counter[str]:
    """Run `work` on every item in a thread pool; print a line per object that did not end well."""
    counts: Counter[str] = Counter()
    progress = Progress(len(items), label)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {pool.submit(work, item): item for item in items}
        for future in as_completed(futures):
            try:
                outcomes = future.result()
            except Exception as exc:  # transient, or a message that names nothing readable: left for later
                outcomes = [{"outcome": FAILED, "object": name(futures[future]), "reason": _reason(exc)}]
            for outcome in outcomes:
                status = outcome.get("outcome", FAILED)
                counts[status] += 1
                if status not in (INGESTED, ALREADY):
                    obj = outcome.get("object") or name(futures[future])
                    progress.println(out, f"{obj}\t{status}\t{outcome.get('reason', '')}")
            progress.step(outcomes[-1].get("outcome", "") if outcomes else "")
    return counts


DLQ_VISIBILITY_SECONDS = 900  # long enough for a slow ingest; failed messages are made visible again at once
# Long polling asks every SQS server, so an empty answer after this wait means the queue is drained
# (a short poll samples some servers only and can come back empty while messages remain).
DLQ_DRAIN_WAIT_SECONDS = 1


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    """Ingest objects already in the landing bucket, or re-drive the dead-letter queue."""
    if args.enqueue:  # the deployed fleet ingests them: only notifications are sent from here
        from lambda_ingest.enqueue import cmd_enqueue

        return cmd_enqueue(args, out)
    from lambda_ingest.outcomes import processor

    _apply_common(args)
    from lambda_ingest.local.context import LocalContext

    # Idempotency's "in progress" mark of a crashed replay then expires with the DLQ visibility timeout.
    processor().use_context(LocalContext(function_name="lambda-ingest-replay", timeout_s=DLQ_VISIBILITY_SECONDS))
    with _engine_output(args.verbose):
        counts = _replay_dlq(args, out) if args.dlq else _replay_bucket(args, out)
    out.write(_summary_line(counts, "object") + "\n")
    return 0 if set(counts) <= SUCCESS else 1


def _replay_bucket(args: argparse.Namespace, out: TextIO) -> Counter[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    from lambda_ingest import clients, events, store
    from lambda_ingest.outcomes import processor

    bucket, _, prefix = args.target[len("s3://") :].partition("/")
    refs = []
    try:
        for page in clients.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):
                    refs.append(events.ObjectRef(bucket, item["Key"], etag=item.get("ETag", "").strip('"') or None))
    except (ClientError, BotoCoreError) as exc:
        raise store.translate(exc, f"list s3://{bucket}/{prefix}") from exc
    return _run_all(
        refs,
        lambda ref: [processor().process(ref)],
        lambda ref: ref.uri,
        args.concurrency,
        "replay",
        out,
    )


def _replay_dlq(args: argparse.Namespace, out: TextIO) -> Counter[str]:
    """Process every message in the dead-letter queue; delete those whose objects all reached an outcome."""
    from lambda_ingest import clients, events
    from lambda_ingest.outcomes import processor

    sqs = clients.client("sqs")
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=args.dlq,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=DLQ_DRAIN_WAIT_SECONDS,
            VisibilityTimeout=DLQ_VISIBILITY_SECONDS,
        ).get("Messages", [])
        if not batch:
            break
        messages.extend(batch)

    def work(message: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            refs = events.from_message_body(message["Body"])
            outcomes = [processor().process(ref) for ref in refs]
        except BaseException:
            # Left in the dead-letter queue, visible again for the next replay.
            with contextlib.suppress(Exception):
                sqs.change_message_visibility(
                    QueueUrl=args.dlq, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            raise
        sqs.delete_message(QueueUrl=args.dlq, ReceiptHandle=message["ReceiptHandle"])
        return outcomes or [{"outcome": "skipped", "reason": "the message names no object (e.g. s3:TestEvent)"}]

    return _run_all(
        messages,
        work,
        lambda message: f"message {message.get('MessageId', '?')}",
        args.concurrency,
        "dlq",
        out,
    )


def _summary_line(counts: Counter[str], noun: str) -> str:
    total = sum(counts.values())
    order = [INGESTED, ALREADY, NOT_INGESTED, "skipped", REJECTED, FAILED]
    names = sorted(counts, key=lambda k: order.index(k) if k in order else len(order))
    parts = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in names)
    return f"{total} {noun}{'' if total == 1 else 's'}: {parts or 'nothing to do'}"


# --- demo ------------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from lambda_ingest.local.demo import run_demo

    if args.frames and not os.path.isdir(args.frames):
        args.subparser.error(f"--frames: {args.frames!r} is not a directory")

    return run_demo(frames_dir=args.frames, keep=args.keep, out=out, quick=args.quick)


# --- parser ----------------------------------------------------------------------------------------------


def _add_archive_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-root", help="Science Archive API root (default: $API_ROOT)")
    parser.add_argument("--auth-token", help="Science Archive API token (default: $AUTH_TOKEN)")
    parser.add_argument("--bucket", help="archive bucket (default: $BUCKET)")
    parser.add_argument("--process-name", help="ingester_process_name tag of metrics (default: $INGESTER_PROCESS_NAME)")


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also write the engine's structured log lines to stderr"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lambda-ingest",
        description="Ingest files into the OCS Science Archive, locally or as the deployed Lambda does.",
        epilog="Exit codes: 0 all done, 1 some file rejected/failed (or not in the archive with --check-only), "
        "2 usage error.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = sub.add_parser(
        "ingest",
        help="upload local files to the archive bucket and register them",
        description="Upload local files to the archive bucket and register them with the Science Archive. "
        "Prints '<path> TAB <status> TAB <url or reason>' per file; status is ingested, already_ingested, "
        "rejected (fix the file) or failed (retry later).",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    _add_archive_flags(ingest)
    ingest.add_argument(
        "--check-only",
        action="store_true",
        help="only report whether the archive holds each file (by md5); exit 0 if it holds all, 1 if not",
    )
    ingest.add_argument(
        "--metadata",
        action="append",
        type=_metadata_pair,
        metavar="KEY=VALUE",
        help="record metadata for non-FITS files (.pdf, .jpg), as ocs_ingester's file_metadata; repeatable",
    )
    _add_verbose(ingest)
    ingest.set_defaults(func=cmd_ingest)

    inspect = sub.add_parser(
        "inspect",
        help="dry run: print the archive record and canonical key a file would get",
        description="Print the archive record ocs_archive builds from a file's headers and the canonical archive "
        "key, reading only the header blocks. Writes nothing: use it to check header-mapping variables.",
    )
    inspect.add_argument("target", metavar="PATH|s3://bucket/key")
    inspect.add_argument("--metadata", action="append", type=_metadata_pair, metavar="KEY=VALUE")
    inspect.add_argument("--bucket", help="archive bucket shown in the key (default: $BUCKET)")
    inspect.set_defaults(func=cmd_inspect)

    replay = sub.add_parser(
        "replay",
        help="ingest objects already in the landing bucket, or re-drive the dead-letter queue",
        description="Backfill: run every object under s3://bucket[/prefix] through the handler's per-object "
        "path (tagging rejected objects, removing ingested ones). With --dlq, process the dead-letter queue's "
        "messages and delete those that reached an outcome; failed ones stay in the queue.",
    )
    replay.add_argument("target", nargs="?", metavar="s3://landing-bucket[/prefix]")
    replay.add_argument("--dlq", metavar="QUEUE_URL", help="re-drive this dead-letter queue instead")
    replay.add_argument(
        "--enqueue",
        metavar="QUEUE_URL",
        help="send one S3 notification per object to this (deployed) ingest queue instead of ingesting here",
    )
    replay.add_argument(
        "--concurrency", type=_positive_int, default=4, metavar="N", help="objects in flight (default 4)"
    )
    _add_archive_flags(replay)
    _add_verbose(replay)
    replay.set_defaults(func=cmd_replay, subparser=replay)

    demo = sub.add_parser(
        "demo",
        help="run the whole flow on an embedded local stack (no AWS account, no Docker)",
        description="Start a local S3/SQS/DynamoDB (moto) and a Science Archive emulator on loopback, upload "
        "sample frames to the landing bucket, run the real Lambda handler on the queued notifications and "
        "print what happened.",
    )
    demo.add_argument("--frames", metavar="DIR", help="also ingest the real frames (.fits, .fits.fz, .tar.gz) in DIR")
    demo.add_argument(
        "--keep", action="store_true", help="leave the stack running (ingesting new uploads) and print how to reach it"
    )
    demo.add_argument("--quick", action="store_true", help="fewer, smaller sample frames")
    demo.set_defaults(func=cmd_demo, subparser=demo)

    from lambda_ingest import audit, backfill

    backfill.add_parser(sub).set_defaults(func=backfill.cmd_backfill)
    audit.add_parser(sub).set_defaults(func=audit.cmd_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "replay" and bool(args.target) == bool(args.dlq):
        args.subparser.error("give either s3://landing-bucket[/prefix] or --dlq QUEUE_URL")
    if args.command == "replay" and args.target and not args.target.startswith("s3://"):
        args.subparser.error(f"expected s3://landing-bucket[/prefix], got {args.target!r}")
    try:
        return int(args.func(args, sys.stdout))
    except IngestError as exc:  # configuration and the like: nothing per file to report
        sys.stderr.write(f"lambda-ingest: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
