"""`lambda-ingest` command line: ingest, inspect, replay, samples, demo; plus ocs_ingester's `ocs_ingest_frame`.

Streams, everywhere: results on stdout, one tab-separated line per file or object
(`<name>\\t<status>\\t<url|key|reason>`; inspect: JSON; samples: the paths written); summaries, progress
bars, errors and (with `-v`) the engine's structured log lines on stderr.

Exit codes, every subcommand:

    0    every file ended ingested or already ingested (replay: or skipped, e.g. deleted meanwhile);
         with --check-only: the archive holds every file
    1    a file was rejected or failed (unlike ocs_ingester, which exits 0 on some failures);
         with --check-only: a file is not in the archive, or the check itself failed
    2    usage or configuration error (bad arguments, settings, credentials, no such bucket or queue,
         an endpoint that cannot be reached, the archive refusing the token): one line on stderr naming
         the cause and what to do; nothing more is attempted
    130  interrupted (Ctrl-C); replay first lets the objects in flight finish and prints the summary so far

Each subcommand is one `cmd_NAME(args, out) -> exit code` function, added to the parser in `build_parser`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from lambda_ingest.errors import IngestError, RejectedError, SystemFaultError

# Status words printed in the second column; the engine's outcomes plus the command line's own.
INGESTED = "ingested"
ALREADY = "already_ingested"
NOT_IN_ARCHIVE = "not_in_archive"  # --check-only: the archive does not hold the file
REJECTED = "rejected"  # permanent: the file cannot be ingested as it is
FAILED = "failed"  # anything else (archive or S3 unavailable, unreadable file); worth retrying
UNREADABLE = "unreadable"  # replay --dlq: a message that is not an event notification (left in the queue)
SKIPPED = "skipped"  # the object was gone or replaced: nothing to do, nothing wrong
SUCCESS = frozenset({INGESTED, ALREADY, SKIPPED})

EXIT_OK, EXIT_NOT_DONE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CommandError(Exception):
    """The whole command cannot go on (configuration, credentials, a missing bucket or queue): one line on
    stderr naming the cause and what to do, exit `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(" ".join(str(message).split()))
        self.code = code


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


_QUEUE_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_CREDENTIALS_REFUSED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidToken",
}
_CREDENTIALS_HINT = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"


def fatal_error(exc: BaseException, target: str = "") -> CommandError | None:
    """The CommandError for a fault of the environment rather than of one file, else None.

    Such a fault would fail every other file the same way, so the command stops at once (exit 2). The
    engine may have wrapped botocore's exception (e.g. as a StorageUnavailableError), hence the walk down
    the cause chain.
    """
    from botocore import exceptions as boto

    for cause in _chain(exc):
        if isinstance(cause, boto.NoCredentialsError | boto.PartialCredentialsError | boto.CredentialRetrievalError):
            return CommandError(
                f"no AWS credentials found: {_CREDENTIALS_HINT} (for the local stack: the exports that "
                "`lambda-ingest demo --keep` prints)"
            )
        if isinstance(cause, boto.NoRegionError):
            return CommandError("no AWS region configured: set AWS_REGION (e.g. us-east-1)")
        if isinstance(cause, boto.EndpointConnectionError):
            return CommandError(
                f"cannot connect to {cause.kwargs.get('endpoint_url', 'the AWS endpoint')}: check S3_ENDPOINT_URL "
                "/ AWS_ENDPOINT_URL (is the local stack still running?) and the network"
            )
        if isinstance(cause, boto.ParamValidationError):
            return CommandError(f"invalid request{' for ' + target if target else ''}: {cause}")
        if isinstance(cause, boto.ClientError):
            code = str(cause.response.get("Error", {}).get("Code", ""))
            if code in _QUEUE_MISSING:
                return CommandError(
                    f"no such queue {target or ''}: check the --dlq URL "
                    "(`aws sqs get-queue-url --queue-name NAME` prints a queue's URL)"
                )
            if code == "NoSuchBucket":
                bucket = cause.response.get("Error", {}).get("BucketName") or target
                return CommandError(f"no such bucket {bucket}: check its name (and S3_ENDPOINT_URL for a local S3)")
            if code in _CREDENTIALS_REFUSED:
                return CommandError(f"AWS refused the credentials ({code}): {_CREDENTIALS_HINT}")
    if isinstance(exc, SystemFaultError):
        return CommandError(str(exc))
    return None


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


def _engine_output(verbose: bool) -> contextlib.AbstractContextManager[None]:
    # observability (Powertools) is imported on use: `lambda-ingest --help` stays quick.
    from lambda_ingest.observability import quiet_engine

    return quiet_engine(verbose)


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


def _queue_url(text: str) -> str:
    if not re.match(r"^https?://[^/\s]+/\S+", text):
        raise argparse.ArgumentTypeError(
            f"expected the queue's URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), got {text!r}; "
            "`aws sqs get-queue-url --queue-name NAME` prints it"
        )
    return text


def _classify(exc: BaseException) -> str:
    return REJECTED if isinstance(exc, RejectedError) else FAILED


# The engine's reasons are written for the Lambda, where SQS retries a transient failure; nothing retries
# at the command line, so that promise is left out here.
_WILL_RETRY = re.compile(r";?\s*will retry\b\.?", re.IGNORECASE)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, IngestError):
        text = exc.reason
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(_WILL_RETRY.sub("", text).split())


def _error_line(prog: str, message: object) -> None:
    sys.stderr.write(f"{prog}: error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()


# --- ingest ----------------------------------------------------------------------------------------------


def _check_one(path: str) -> tuple[str, str]:
    """(status, url) of a local file for --check-only: is a file with these bytes in the archive?"""
    from lambda_ingest.compat import find_existing
    from lambda_ingest.sources import LocalFile

    with open(path, "rb") as fileobj:
        existing = find_existing(LocalFile(fileobj, path))
    return (ALREADY, existing.url or "") if existing else (NOT_IN_ARCHIVE, "")


def _ingest_one(path: str, metadata: dict[str, str]) -> tuple[str, str]:
    from lambda_ingest.ingest import ingest_source
    from lambda_ingest.observability import logger, opentsdb
    from lambda_ingest.sources import LocalFile

    with open(path, "rb") as fileobj:
        result = ingest_source(LocalFile(fileobj, path), file_metadata=metadata or None)
    # The handler's one structured line per outcome (shown with -v)
    logger.info(result.status, extra={**result.summary(), "path": path})
    opentsdb.record(result)
    return result.status, result.url or ""


def cmd_ingest(args: argparse.Namespace, out: TextIO) -> int:
    """Upload local files to the archive bucket and register them (ocs_ingester's job, several at once)."""
    from lambda_ingest.observability import logger

    _apply_common(args)
    metadata = dict(args.metadata or [])
    counts: Counter[str] = Counter()
    try:
        with _engine_output(args.verbose):
            for path in args.paths:
                try:
                    status, detail = _check_one(path) if args.check_only else _ingest_one(path, metadata)
                except Exception as exc:
                    fatal = fatal_error(exc)
                    if fatal is not None:
                        raise fatal from exc
                    status, detail = _classify(exc), _reason(exc)
                    logger.warning("not ingested", extra={"outcome": status, "path": path, "reason": detail})
                counts[status] += 1
                out.write(f"{path}\t{status}\t{detail}\n")
                out.flush()
    finally:  # also when stopped by a fault of the environment or Ctrl-C: what was done so far
        if len(args.paths) > 1 and counts:
            sys.stderr.write(_summary_line(counts, "file") + "\n")
    return EXIT_OK if set(counts) <= SUCCESS else EXIT_NOT_DONE


def ocs_ingest_frame(argv: Sequence[str] | None = None) -> None:
    """ocs_ingester's `ocs_ingest_frame PATH [--api-root] [--auth-token] [--bucket] [--process-name]
    [--check-only]`: prints the frame's URL (or True/False with --check-only), as ocs_ingester did.

    Unlike ocs_ingester it exits 1 whenever the file was not ingested (a file already in the archive is a
    success: its URL is printed, exit 0), and 2 with one line on stderr for a usage or configuration error.
    """
    parser = argparse.ArgumentParser(
        prog="ocs_ingest_frame",
        description=(
            "Upload a FITS file to the science archive of an observatory control system and print its URL. "
            "--check-only only checks whether the archive holds the file (by md5)."
        ),
        epilog="Exit codes: 0 ingested (or already in the archive), 1 not ingested (or not in the archive with "
        "--check-only), 2 usage or configuration error, 130 interrupted.",
    )
    parser.add_argument("path", help="Path to file")
    _add_archive_flags(parser)
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="only check whether the archive holds the file: prints True (exit 0) or False (exit 1)",
    )
    args = parser.parse_args(argv)
    raise SystemExit(_ocs_ingest_frame(args, sys.stdout))


def _ocs_ingest_frame(args: argparse.Namespace, out: TextIO) -> int:
    try:
        _apply_common(args)
        with _engine_output(verbose=False):
            try:
                if args.check_only:
                    status, _ = _check_one(args.path)
                else:
                    status, url = _ingest_one(args.path, {})
            except Exception as exc:
                fatal = fatal_error(exc)
                if fatal is not None:
                    raise fatal from exc
                if args.check_only:  # still the True/False answer on stdout; why on stderr
                    out.write("False\n")
                    _error_line("ocs_ingest_frame", f"{args.path}: {_reason(exc)}")
                else:
                    out.write(f"Exception uploading file: {_reason(exc)}\n")
                return EXIT_NOT_DONE
    except (CommandError, IngestError) as exc:
        _error_line("ocs_ingest_frame", exc)
        return getattr(exc, "code", EXIT_USAGE)
    except KeyboardInterrupt:
        _error_line("ocs_ingest_frame", "interrupted")
        return EXIT_INTERRUPTED
    if args.check_only:
        out.write(f"{status == ALREADY}\n")
        return EXIT_OK if status == ALREADY else EXIT_NOT_DONE
    out.write(f"{url}\n")
    return EXIT_OK


# --- inspect ---------------------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    """Print the record and canonical key a file would get; writes nothing anywhere."""
    import json

    from lambda_ingest import store
    from lambda_ingest.errors import ObjectGoneError
    from lambda_ingest.ingest import read_record, storage_class_for
    from lambda_ingest.settings import get_settings
    from lambda_ingest.sources import LandingObject, LocalFile

    _apply_common(args)
    metadata = dict(args.metadata or [])
    try:
        if args.target.startswith("s3://"):
            bucket, key = _split_s3_url(args.target)
            try:
                record, read = read_record(LandingObject(store.head(bucket, key)), metadata or None)
            except ObjectGoneError:
                _require_bucket(bucket)  # a HEAD of a key in a missing bucket says only 404
                raise
        else:
            with open(args.target, "rb") as fileobj:
                record, read = read_record(LocalFile(fileobj, args.target), metadata or None)
    except CommandError:
        raise
    except Exception as exc:
        fatal = fatal_error(exc, args.target)
        if fatal is not None:
            raise fatal from exc
        out.write(f"{args.target}\t{_classify(exc)}\t{_reason(exc)}\n")
        return EXIT_NOT_DONE
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
    return EXIT_OK


def _split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://") :].partition("/")
    return bucket, key


def _require_bucket(bucket: str) -> None:
    """Raise CommandError when `bucket` does not exist (or cannot be reached)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from lambda_ingest import clients

    try:
        clients.s3().head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or exc.response.get("Error", {}).get("Code") in {"404", "NoSuchBucket"}:
            raise CommandError(f"no such bucket {bucket}: check its name (and S3_ENDPOINT_URL for a local S3)") from exc
        raise fatal_error(exc, f"s3://{bucket}") or CommandError(f"s3://{bucket}: {exc}", EXIT_NOT_DONE) from exc
    except BotoCoreError as exc:
        raise fatal_error(exc, f"s3://{bucket}") or CommandError(f"s3://{bucket}: {exc}", EXIT_NOT_DONE) from exc


# --- replay ----------------------------------------------------------------------------------------------

INTERRUPT_GRACE_SECONDS = 60.0  # Ctrl-C: how long the objects in flight may take to finish
_POLL_SECONDS = 0.1  # how often the main thread looks at Ctrl-C while waiting for results


@dataclass
class Tally:
    """What a replay did: outcomes by status, and what an interruption or a fault left undone."""

    counts: Counter[str] = field(default_factory=Counter)
    interrupted: bool = False
    not_started: int = 0
    abandoned: int = 0  # still running when the grace period ran out (or at a second Ctrl-C)
    fatal: CommandError | None = None

    def summary(self, noun: str) -> str:
        line = _summary_line(self.counts, noun)
        unfinished = []
        if self.not_started:
            unfinished.append(f"{self.not_started} not started")
        if self.abandoned:
            unfinished.append(f"{self.abandoned} abandoned while in flight")
        if self.interrupted:
            return f"interrupted: {line}" + (f"; {', '.join(unfinished)}" if unfinished else "")
        return line + (f"; {', '.join(unfinished)}" if unfinished else "")


@contextlib.contextmanager
def _stop_on_sigint(stop: threading.Event, tally: Tally) -> Iterator[None]:
    """The first Ctrl-C stops starting new objects; a second one stops waiting for those in flight."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        if tally.interrupted:
            raise KeyboardInterrupt
        tally.interrupted = True
        stop.set()
        sys.stderr.write("\ninterrupted: letting the objects in flight finish (Ctrl-C again to stop at once)\n")
        sys.stderr.flush()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_all(
    items: Sequence[Any],
    work: Callable[[Any], list[dict[str, Any]]],
    name: Callable[[Any], str],
    concurrency: int,
    label: str,
    out: TextIO,
    release: Callable[[Any], None] | None = None,
) -> Tally:
    """Run `work` on every item, `concurrency` at a time; print a line per object that did not end well.

    Hand-written rather than a ThreadPoolExecutor: on Ctrl-C (or a fault of the environment) nothing new
    may start, and the executor would still run every queued item at shutdown. Workers are daemon threads
    so that an object stuck past the grace period cannot hold the process. `release(item)` is called for
    every item not started.
    """
    tally = Tally()
    todo: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    results: queue.SimpleQueue[tuple[Any, list[dict[str, Any]] | None, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()
    threads = _workers(todo, results, stop, work, min(concurrency, len(items)), label)
    progress = Progress(len(items), label)
    finished = 0
    deadline: float | None = None
    with _stop_on_sigint(stop, tally):
        for thread in threads:
            thread.start()
        try:
            while finished < len(items):
                if stop.is_set():
                    deadline = deadline or time.monotonic() + INTERRUPT_GRACE_SECONDS
                    if time.monotonic() > deadline or (
                        results.empty() and not any(thread.is_alive() for thread in threads)
                    ):
                        break
                try:
                    item, outcomes, exc = results.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
                finished += 1
                if exc is not None:
                    fatal = fatal_error(exc)
                    if fatal is not None and tally.fatal is None:
                        tally.fatal = fatal
                        stop.set()  # the next objects would fail the same way
                    # transient, or a message that names nothing readable: left for later
                    outcomes = [{"outcome": FAILED, "object": name(item), "reason": _reason(exc)}]
                _count(outcomes or [], name(item), tally, progress, out)
        except KeyboardInterrupt:  # the second Ctrl-C
            stop.set()
    tally.not_started = _release_unstarted(todo, release)
    tally.abandoned = len(items) - finished - tally.not_started
    if progress.live and finished < len(items):
        sys.stderr.write("\n")
    return tally


def _workers(
    todo: queue.SimpleQueue[Any],
    results: queue.SimpleQueue[Any],
    stop: threading.Event,
    work: Callable[[Any], list[dict[str, Any]]],
    count: int,
    label: str,
) -> list[threading.Thread]:
    """`count` daemon threads taking items from `todo` until it is empty or `stop` is set (not yet started)."""

    def worker() -> None:
        while not stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results.put((item, work(item), None))
            except BaseException as exc:  # reported by the main thread
                results.put((item, None, exc))

    return [threading.Thread(target=worker, name=f"{label}-{n}", daemon=True) for n in range(count)]


def _count(outcomes: list[dict[str, Any]], obj: str, tally: Tally, progress: Progress, out: TextIO) -> None:
    """Tally one object's outcomes; a result line for each that did not end well."""
    for outcome in outcomes:
        status = outcome.get("outcome", FAILED)
        tally.counts[status] += 1
        if status not in (INGESTED, ALREADY):
            where = outcome.get("object") or obj
            progress.println(out, f"{where}\t{status}\t{_reason_text(outcome.get('reason', ''))}")
    progress.step(outcomes[-1].get("outcome", "") if outcomes else "")


def _release_unstarted(todo: queue.SimpleQueue[Any], release: Callable[[Any], None] | None) -> int:
    """Hand back every item no worker took (e.g. a DLQ message made visible again); returns how many."""
    count = 0
    while True:
        try:
            item = todo.get_nowait()
        except queue.Empty:
            return count
        count += 1
        if release is not None:
            with contextlib.suppress(Exception):
                release(item)


def _reason_text(reason: str) -> str:
    return " ".join(_WILL_RETRY.sub("", str(reason)).split())


DLQ_VISIBILITY_SECONDS = 900  # long enough for a slow ingest; failed messages are made visible again at once
# Long polling asks every SQS server, so an empty answer after this wait means the queue is drained
# (a short poll samples some servers only and can come back empty while messages remain).
DLQ_DRAIN_WAIT_SECONDS = 1


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    """Ingest objects already in the landing bucket, or re-drive the dead-letter queue."""
    if args.enqueue:  # the deployed fleet ingests them: only notifications are sent from here
        from lambda_ingest.enqueue import cmd_enqueue

        return cmd_enqueue(args, out)
    from lambda_ingest.context import LocalContext
    from lambda_ingest.outcomes import processor

    _apply_common(args)
    # Idempotency's "in progress" mark of a crashed replay then expires with the DLQ visibility timeout.
    processor().use_context(LocalContext(function_name="lambda-ingest-replay", timeout_s=DLQ_VISIBILITY_SECONDS))
    with _engine_output(args.verbose):
        tally = _replay_dlq(args, out) if args.dlq else _replay_bucket(args, out)
    if tally is None:  # an empty dead-letter queue
        sys.stderr.write("the dead-letter queue is empty: nothing to replay\n")
        return EXIT_OK
    sys.stderr.write(tally.summary("object") + "\n")
    if tally.fatal is not None:
        raise tally.fatal
    if tally.interrupted:
        return EXIT_INTERRUPTED
    done = set(tally.counts) <= SUCCESS and not tally.not_started and not tally.abandoned
    return EXIT_OK if done else EXIT_NOT_DONE


def _replay_bucket(args: argparse.Namespace, out: TextIO) -> Tally:
    from botocore.exceptions import BotoCoreError, ClientError

    from lambda_ingest import clients, events, store
    from lambda_ingest.outcomes import processor

    bucket, prefix = _split_s3_url(args.target)
    refs = []
    try:
        for page in clients.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):
                    refs.append(events.ObjectRef(bucket, item["Key"], etag=item.get("ETag", "").strip('"') or None))
    except (ClientError, BotoCoreError) as exc:
        fatal = fatal_error(exc, f"s3://{bucket}")
        if fatal is not None:
            raise fatal from exc
        raise CommandError(_reason(store.translate(exc, f"list s3://{bucket}/{prefix}")), EXIT_NOT_DONE) from exc
    return _run_all(
        refs,
        lambda ref: [processor().process(ref)],
        lambda ref: ref.uri,
        args.concurrency,
        "replay",
        out,
    )


def _receive_all(sqs: Any, url: str, release: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Every message of the queue, hidden while the replay runs; on a failure all are made visible again."""
    from botocore.exceptions import BotoCoreError, ClientError

    messages: list[dict[str, Any]] = []
    try:
        while True:
            batch = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=DLQ_DRAIN_WAIT_SECONDS,
                VisibilityTimeout=DLQ_VISIBILITY_SECONDS,
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)
    except (ClientError, BotoCoreError, KeyboardInterrupt) as exc:
        for message in messages:
            release(message)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise fatal_error(exc, url) or CommandError(f"{url}: {exc}", EXIT_NOT_DONE) from exc


def _replay_dlq(args: argparse.Namespace, out: TextIO) -> Tally | None:
    """Process every message in the dead-letter queue; delete those whose objects all reached an outcome."""
    from lambda_ingest import clients, events
    from lambda_ingest.outcomes import processor

    sqs = clients.client("sqs")

    def release(message: dict[str, Any]) -> None:
        """Make a message visible again at once (left in the dead-letter queue for the next replay)."""
        with contextlib.suppress(Exception):
            sqs.change_message_visibility(
                QueueUrl=args.dlq, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )

    messages = _receive_all(sqs, args.dlq, release)
    if not messages:
        return None

    def work(message: dict[str, Any]) -> list[dict[str, Any]]:
        name = f"message {message.get('MessageId', '?')}"
        try:
            refs = events.from_message_body(message["Body"])
        except (ValueError, KeyError, TypeError):
            release(message)
            reason = "not an S3 event notification (left in the queue)"
            return [{"outcome": UNREADABLE, "object": name, "reason": reason}]
        try:
            outcomes = [processor().process(ref) for ref in refs]
        except BaseException:
            release(message)
            raise
        sqs.delete_message(QueueUrl=args.dlq, ReceiptHandle=message["ReceiptHandle"])
        return outcomes or [{"outcome": SKIPPED, "object": name, "reason": "the message names no object"}]

    return _run_all(
        messages,
        work,
        lambda message: f"message {message.get('MessageId', '?')}",
        args.concurrency,
        "dlq",
        out,
        release=release,
    )


def _summary_line(counts: Counter[str], noun: str) -> str:
    unreadable = counts.get(UNREADABLE, 0)
    objects = Counter({k: v for k, v in counts.items() if k != UNREADABLE})
    total = sum(objects.values())
    order = [INGESTED, ALREADY, NOT_IN_ARCHIVE, SKIPPED, REJECTED, FAILED]
    names = sorted(objects, key=lambda k: order.index(k) if k in order else len(order))
    parts = ", ".join(f"{objects[k]} {k.replace('_', ' ')}" for k in names)
    line = f"{total} {noun}{'' if total == 1 else 's'}: {parts or 'nothing to do'}"
    if unreadable:
        plural = "s" if unreadable != 1 else ""
        line += f"; {unreadable} unreadable message{plural} (not an S3 event notification) left in the queue"
    return line


# --- samples ---------------------------------------------------------------------------------------------


def cmd_samples(args: argparse.Namespace, out: TextIO) -> int:
    """Write the demo's sample files (synthetic frames with LCO headers) to a folder, to try the commands on."""
    import random
    from pathlib import Path

    sample_frames = _local_stack("demo").sample_frames
    folder = Path(args.folder)
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"{folder} exists and is not a directory: give a new or existing folder")
    # A fresh seed by default, so the frames are new to an archive that already holds earlier samples.
    seed = args.seed if args.seed is not None else random.randrange(1, 10_000)
    written = []
    for sample in sample_frames(quick=args.quick, seed=seed):
        path = folder / sample.key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(sample.data)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
        written.append(path)
        out.write(f"{path}\t{sample.note}\n")
    out.flush()
    example = next(p for p in written if p.name.endswith(".fits.fz"))
    sys.stderr.write(
        f"{len(written)} sample files in {folder} (--seed {seed}). Try:\n"
        f"  lambda-ingest inspect '{example}'\n"
        f"  lambda-ingest ingest --check-only '{example}'\n"
    )
    return EXIT_OK


# --- demo ------------------------------------------------------------------------------------------------


LOCAL_EXTRA_HINT = "pip install 'lambda-ingest[local]'"
# What the local stack needs beyond the Lambda's own dependencies (pyproject.toml's `local` extra).
LOCAL_EXTRA_MODULES = ("moto", "flask")  # moto[server] brings flask


def _local_stack(module: str) -> Any:
    """A module of lambda_ingest.local (the demo's stack and sample frames), loaded only by the commands that
    use it: the package itself never imports the test doubles, and without the `local` extra installed the
    command says in one line how to get it."""
    import importlib
    import importlib.util

    for name in LOCAL_EXTRA_MODULES:
        if importlib.util.find_spec(name) is None:
            raise CommandError(f"this command needs the local stack ({name} is not installed): {LOCAL_EXTRA_HINT}")
    return importlib.import_module(f"lambda_ingest.local.{module}")


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    run_demo = _local_stack("demo").run_demo
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


METADATA_HELP = (
    "record metadata for files without FITS headers (.pdf, .jpg), as ocs_ingester's file_metadata; repeatable"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lambda-ingest",
        description="Ingest files into the OCS Science Archive, locally or as the deployed Lambda does.",
        epilog="Exit codes: 0 all done, 1 some file rejected/failed (or not in the archive with --check-only), "
        "2 usage or configuration error, 130 interrupted. New here? `lambda-ingest demo`, then "
        "`lambda-ingest samples DIR` writes frames to try the other commands on.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_ingest(sub)
    _add_inspect(sub)
    _add_replay(sub)
    _add_samples(sub)
    _add_demo(sub)
    _add_backfill_and_audit(sub)
    return parser


def _add_backfill_and_audit(sub: Any) -> None:
    # Their arguments live beside their logic; those modules import boto3 lazily, so startup stays quick.
    from lambda_ingest import audit, backfill

    backfill.add_parser(sub).set_defaults(func=backfill.cmd_backfill)
    audit.add_parser(sub).set_defaults(func=audit.cmd_audit)


def _add_ingest(sub: Any) -> None:
    ingest = sub.add_parser(
        "ingest",
        help="upload local files to the archive bucket and register them",
        description="Upload local files to the archive bucket and register them with the Science Archive. "
        "Prints '<path> TAB <status> TAB <url or reason>' per file; status is ingested, already_ingested, "
        "rejected (fix the file) or failed (retry later); with --check-only, already_ingested or not_in_archive.",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    _add_archive_flags(ingest)
    ingest.add_argument(
        "--check-only",
        action="store_true",
        help="only report whether the archive holds each file (by md5); exit 0 if it holds all, 1 if not",
    )
    ingest.add_argument("--metadata", action="append", type=_metadata_pair, metavar="KEY=VALUE", help=METADATA_HELP)
    _add_verbose(ingest)
    ingest.set_defaults(func=cmd_ingest, subparser=ingest)


def _add_inspect(sub: Any) -> None:
    inspect = sub.add_parser(
        "inspect",
        help="dry run: print the archive record and canonical key a file would get",
        description="Print the archive record ocs_archive builds from a file's headers and the canonical archive "
        "key, reading only the header blocks. Writes nothing: use it to check header-mapping variables.",
    )
    inspect.add_argument("target", metavar="PATH|s3://bucket/key")
    inspect.add_argument("--metadata", action="append", type=_metadata_pair, metavar="KEY=VALUE", help=METADATA_HELP)
    inspect.add_argument("--bucket", help="archive bucket shown in the key (default: $BUCKET)")
    inspect.set_defaults(func=cmd_inspect, subparser=inspect)


def _add_replay(sub: Any) -> None:
    replay = sub.add_parser(
        "replay",
        help="ingest objects already in the landing bucket, or re-drive the dead-letter queue",
        description="Backfill: run every object under s3://bucket[/prefix] through the handler's per-object "
        "path (tagging rejected objects, removing ingested ones). With --dlq, process the dead-letter queue's "
        "messages and delete those that reached an outcome; failed ones stay in the queue. Ctrl-C stops "
        "starting new objects, lets those in flight finish and prints the summary so far (exit 130).",
    )
    replay.add_argument("target", nargs="?", metavar="s3://landing-bucket[/prefix]")
    replay.add_argument("--dlq", type=_queue_url, metavar="QUEUE_URL", help="re-drive this dead-letter queue instead")
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


def _add_samples(sub: Any) -> None:
    samples = sub.add_parser(
        "samples",
        help="write sample frames (synthetic, with LCO headers) to a folder, to try the other commands on",
        description="Write the demo's sample files to DIR: raw and processed frames, a catalogue, a spectrum "
        "tarball, a frame lacking DAY-OBS and a file that is not FITS. Prints one '<path> TAB <what>' line "
        "per file.",
    )
    samples.add_argument("folder", metavar="DIR", help="folder to write to (created if missing)")
    samples.add_argument("--quick", action="store_true", help="only the four small frames of `demo --quick`")
    samples.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="data bytes to use (the same N writes the same files); default: a fresh one, new to the archive",
    )
    samples.set_defaults(func=cmd_samples, subparser=samples)


def _add_demo(sub: Any) -> None:
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


def _check_usage(args: argparse.Namespace) -> None:
    """Usage errors argparse cannot express (exit 2 through the subcommand's parser)."""
    if args.command == "replay":
        if bool(args.target) == bool(args.dlq):
            args.subparser.error("give either s3://landing-bucket[/prefix] or --dlq QUEUE_URL")
        if args.target and (not args.target.startswith("s3://") or not _split_s3_url(args.target)[0]):
            args.subparser.error(f"expected s3://landing-bucket[/prefix], got {args.target!r}")
    if args.command == "inspect" and args.target.startswith("s3://") and not all(_split_s3_url(args.target)):
        args.subparser.error(f"expected s3://bucket/key (an object, not a bucket), got {args.target!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_usage(args)
    try:
        # Settings first: a bad variable is named before anything else reads the environment.
        from lambda_ingest.settings import get_settings

        get_settings()
        return int(args.func(args, sys.stdout))
    except CommandError as exc:
        _error_line(parser.prog, exc)
        return exc.code
    except Exception as exc:  # no traceback for a user error: one line naming the cause
        from botocore.exceptions import BotoCoreError, ClientError

        fatal = fatal_error(exc)
        if fatal is not None:
            _error_line(parser.prog, fatal)
            return fatal.code
        if isinstance(exc, IngestError | BotoCoreError | ClientError | OSError):
            _error_line(parser.prog, _reason(exc))
            return EXIT_NOT_DONE
        raise  # a bug: the traceback is what a report needs
    except KeyboardInterrupt:
        _error_line(parser.prog, "interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
