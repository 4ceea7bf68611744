"""`lambda-ingest audit` and the scheduled audit function: prove the landing bucket, the archive bucket and
the Science Archive agree.

| check   | source walked                          | finding            | what it means                             |
|---------|----------------------------------------|--------------------|-------------------------------------------|
| landing | landing bucket (list)                  | stale_landing      | older than --stale-after, never ingested  |
|         |                                        | rejected_landing   | tagged rejected (by reason; not counted   |
|         |                                        |                    | as inconsistent: the file is at fault)    |
| bucket  | archive bucket (list versions; one     | orphan_version     | a version the archive does not register   |
|         | frames/?basename_exact= per key)       |                    |                                           |
| api     | frames/ (paged; HEAD per version)      | missing_object     | a registered version with no object       |
|         |                                        | md5_mismatch       | the object's md5 metadata (or plain-md5   |
|         |                                        |                    | ETag) differs from the archive's md5      |

Everything streams: one listing page or archive page at a time, a bounded pool of HEADs, and at most
`max_examples` findings per kind kept for the JSON report, so memory stays flat for any archive size.

`--fix` (dry run without it) repairs only what is provably safe:
- an orphan version older than --min-age (default 12 h, SQS's longest visibility timeout, so no ingest can
  still be about to register it) that carries this project's md5 metadata, and is still unregistered when
  looked up again just before the delete;
- a stale landing object, re-driven through the handler's own per-object path (ingested, or rejected and
  tagged, exactly as its notification would have done).
Missing objects and md5 mismatches need a person: they are reported, never touched.

Thumbnails (`.../thumbnails/...`) are registered through `thumbnails/`, which keeps no versions; the bucket
check leaves them out (counted as `bucket_thumbnails_skipped`).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from lambda_ingest.errors import ConfigurationError, IngestError

STALE_LANDING = "stale_landing"
REJECTED_LANDING = "rejected_landing"
ORPHAN_VERSION = "orphan_version"
MISSING_OBJECT = "missing_object"
MD5_MISMATCH = "md5_mismatch"
INCONSISTENT_KINDS = (STALE_LANDING, ORPHAN_VERSION, MISSING_OBJECT, MD5_MISMATCH)
KINDS = (*INCONSISTENT_KINDS, REJECTED_LANDING)
CHECKS = ("landing", "bucket", "api")

# EMF metric per kind (scheduled audit); AuditInconsistencies is their sum without rejected_landing.
METRICS = {
    STALE_LANDING: "AuditStaleLandingObjects",
    REJECTED_LANDING: "AuditRejectedLandingObjects",
    ORPHAN_VERSION: "AuditOrphanVersions",
    MISSING_OBJECT: "AuditMissingObjects",
    MD5_MISMATCH: "AuditMd5Mismatches",
}

DEFAULT_STALE_AFTER = 3600  # s: a notification normally reaches its outcome within minutes
DEFAULT_MIN_AGE = 12 * 3600  # s: SQS's maximum visibility timeout, longer than any ingest attempt
API_PAGE = 1000  # the archive's largest page
PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Finding:
    kind: str
    uri: str
    detail: str
    fixable: bool = False
    fixed: bool = False

    def line(self) -> str:
        return f"{self.kind}\t{self.uri}\t{self.detail}"


@dataclass
class AuditOptions:
    archive_bucket: str
    landing_bucket: str | None = None
    prefix: str = ""
    since: datetime | None = None
    stale_after: int = DEFAULT_STALE_AFTER
    min_age: int = DEFAULT_MIN_AGE
    fix: bool = False
    checks: tuple[str, ...] = CHECKS
    concurrency: int = 8
    max_examples: int = 100
    deadline: float | None = None  # time.monotonic() after which the audit stops (Lambda's time limit)


@dataclass
class Report:
    """Counts (all findings) and a bounded sample of findings per kind; thread-safe."""

    options: AuditOptions
    sink: Callable[[Finding], None] | None = None
    counts: Counter[str] = field(default_factory=Counter)
    fixable: Counter[str] = field(default_factory=Counter)
    fixed: Counter[str] = field(default_factory=Counter)
    scanned: Counter[str] = field(default_factory=Counter)
    rejected_reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    incomplete: bool = False
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, finding: Finding) -> None:
        with self._lock:
            self.counts[finding.kind] += 1
            self.fixable[finding.kind] += finding.fixable
            self.fixed[finding.kind] += finding.fixed
            if finding.kind == REJECTED_LANDING:
                self.rejected_reasons[finding.detail] += 1
            kept = self.examples.setdefault(finding.kind, [])
            if len(kept) < self.options.max_examples:
                kept.append({"uri": finding.uri, "detail": finding.detail, "fixed": finding.fixed})
            if self.sink is not None:
                self.sink(finding)

    def scan(self, what: str, count: int = 1) -> None:
        with self._lock:
            self.scanned[what] += count

    @property
    def inconsistencies(self) -> int:
        """Inconsistent findings still standing (fixed ones no longer count)."""
        return sum(self.counts[k] - self.fixed[k] for k in INCONSISTENT_KINDS)

    def as_json(self) -> dict[str, Any]:
        o = self.options
        return {
            "started": self.started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "consistent": self.inconsistencies == 0 and not self.incomplete,
            "incomplete": self.incomplete,
            "inconsistencies": self.inconsistencies,
            "options": {
                "landing_bucket": o.landing_bucket,
                "archive_bucket": o.archive_bucket,
                "prefix": o.prefix,
                "since": o.since.isoformat() if o.since else None,
                "stale_after_seconds": o.stale_after,
                "min_age_seconds": o.min_age,
                "fix": o.fix,
                "checks": list(o.checks),
            },
            "scanned": dict(self.scanned),
            "counts": {k: self.counts[k] for k in KINDS},
            "fixable": {k: self.fixable[k] for k in KINDS if self.fixable[k]},
            "fixed": {k: self.fixed[k] for k in KINDS if self.fixed[k]},
            "rejected_by_reason": dict(self.rejected_reasons.most_common()),
            "examples": self.examples,
            "notes": self.notes,
        }

    def table(self) -> str:
        rows = [("check", "finding", "found", "fixable", "fixed")]
        check_of = {
            STALE_LANDING: "landing",
            REJECTED_LANDING: "landing",
            ORPHAN_VERSION: "bucket",
            MISSING_OBJECT: "api",
            MD5_MISMATCH: "api",
        }
        for kind in (STALE_LANDING, REJECTED_LANDING, ORPHAN_VERSION, MISSING_OBJECT, MD5_MISMATCH):
            if check_of[kind] in self.options.checks:
                fixable = "-" if kind in (REJECTED_LANDING, MISSING_OBJECT, MD5_MISMATCH) else str(self.fixable[kind])
                fixed = "-" if fixable == "-" else str(self.fixed[kind])
                rows.append((check_of[kind], kind, str(self.counts[kind]), fixable, fixed))
        for reason, n in self.rejected_reasons.most_common(10):
            rows.append(("", f"  rejected: {reason[:60]}", str(n), "", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        scanned = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in sorted(self.scanned.items()))
        lines.append(f"scanned: {scanned or 'nothing'}")
        verdict = "consistent" if self.inconsistencies == 0 else f"INCONSISTENT: {self.inconsistencies}"
        if self.incomplete:
            verdict += " (INCOMPLETE: stopped before the end)"
        pending = sum(self.fixable[k] - self.fixed[k] for k in INCONSISTENT_KINDS)
        if pending and not self.options.fix:
            verdict += f"; dry run: {pending} fixable with --fix"
        lines.append(verdict)
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


# --- helpers ----------------------------------------------------------------------------------------------


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """`--since`: an ISO date or datetime (naive = UTC), or a duration back from now: 90m, 36h, 7d."""
    if not text:
        return None
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"(\d+)\s*([mhd])", text.strip())
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - timedelta(**{unit: int(match.group(1))})
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(f"--since: expected an ISO date/time or 90m/36h/7d, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def archive_key_for(frame: dict[str, Any], extension: str) -> str:
    """The key the archive serves a version from: ocs_archive's filestore path for the frame's fields and
    this version's extension (the same computation the archive does to presign its URLs)."""
    from ocs_archive.input.file import EmptyFile
    from ocs_archive.input.filefactory import FileFactory
    from ocs_archive.settings import settings as s

    day = str(frame.get("observation_day") or "").replace("-", "")
    metadata = {
        s.OBSERVATION_DATE_KEY: frame.get("observation_date"),
        s.OBSERVATION_DAY_KEY: day,
        s.REDUCTION_LEVEL_KEY: frame.get("reduction_level"),
        s.INSTRUMENT_ID_KEY: frame.get("instrument_id"),
        s.EXPOSURE_TIME_KEY: frame.get("exposure_time"),
        s.SITE_ID_KEY: frame.get("site_id"),
        s.TELESCOPE_ID_KEY: frame.get("telescope_id"),
        s.OBSERVATION_ID_KEY: frame.get("observation_id"),
        s.PRIMARY_OPTICAL_ELEMENT_KEY: frame.get("primary_optical_element"),
        s.TARGET_NAME_KEY: frame.get("target_name"),
        s.REQUEST_ID_KEY: frame.get("request_id"),
        s.CONFIGURATION_TYPE_KEY: frame.get("configuration_type"),
        s.PROPOSAL_ID_KEY: frame.get("proposal_id"),
        s.PUBLIC_DATE_KEY: frame.get("public_date"),
    }
    empty = EmptyFile(f"{frame['basename']}{extension}")
    datafile = FileFactory.get_datafile_class_for_extension(empty.extension)
    return str(datafile(empty, metadata, {}, {}).get_filestore_path())


def _age(modified: datetime, now: datetime) -> str:
    seconds = int((now - modified).total_seconds())
    return f"{seconds // 3600} h" if seconds >= 3600 else f"{seconds // 60} min"


class _Ticker:
    """A running count on stderr, redrawn in place on a terminal; elsewhere one line per finished check."""

    def __init__(self, report: Report, stream: TextIO | None = None) -> None:
        self.report, self.stream = report, stream
        self.live = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last = 0.0

    def tick(self, check: str, force: bool = False) -> None:
        if self.stream is None or not (self.live or force):
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        scanned = sum(n for what, n in self.report.scanned.items() if what.startswith(check))
        text = f"audit {check}: {scanned} scanned, {self.report.inconsistencies} inconsistent"
        self.stream.write(f"\r\033[K{text}" if self.live else text + "\n")
        if force and self.live:
            self.stream.write("\n")
        self.stream.flush()


# --- the auditor ------------------------------------------------------------------------------------------


class Auditor:
    def __init__(self, options: AuditOptions, report: Report, progress: TextIO | None = None) -> None:
        from lambda_ingest import clients

        self.options, self.report = options, report
        self.s3 = clients.s3()
        self.archive = clients.archive()
        self.now = datetime.now(UTC)
        self.ticker = _Ticker(report, progress)

    def run(self) -> Report:
        for check in self.options.checks:
            if self._out_of_time():
                break
            getattr(self, f"check_{check}")()
            self.ticker.tick(check, force=True)
        return self.report

    def _out_of_time(self) -> bool:
        if self.options.deadline is not None and time.monotonic() > self.options.deadline:
            self.report.incomplete = True
            return True
        return False

    def _pages(self, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        from lambda_ingest import store

        try:
            for page in self.s3.get_paginator(operation).paginate(**params):
                if self._out_of_time():
                    return
                yield page
        except (ClientError, BotoCoreError) as exc:
            raise store.translate(exc, f"{operation} s3://{params['Bucket']}/{params.get('Prefix', '')}") from exc

    def _recent(self, modified: datetime) -> bool:
        return self.options.since is None or modified >= self.options.since

    # landing -------------------------------------------------------------------------------------------

    def check_landing(self) -> None:
        from lambda_ingest import settings, store
        from lambda_ingest.errors import ObjectGoneError
        from lambda_ingest.outcomes import REASON_TAG, STATUS_TAG

        bucket = self.options.landing_bucket
        if not bucket:
            self.report.notes.append("landing check skipped: no landing bucket (--landing-bucket, LANDING_BUCKET)")
            return
        if settings.get_settings().keep_landing_object:
            self.report.notes.append("landing check skipped: KEEP_LANDING_OBJECT keeps ingested objects there")
            return
        stale_before = self.now - timedelta(seconds=self.options.stale_after)
        for page in self._pages("list_objects_v2", Bucket=bucket, Prefix=self.options.prefix):
            for item in page.get("Contents", []):
                key, modified = item["Key"], item["LastModified"]
                if key.endswith("/") or not self._recent(modified):
                    continue
                self.report.scan("landing_objects")
                if modified > stale_before:
                    continue  # its notification may still be on its way
                uri = f"s3://{bucket}/{key}"
                try:
                    tags = store.get_tags(bucket, key)
                except ObjectGoneError:
                    continue  # ingested (and removed) while we looked
                if tags.get(STATUS_TAG) == "rejected":
                    self.report.add(Finding(REJECTED_LANDING, uri, tags.get(REASON_TAG, "")))
                    continue
                self.report.add(self._stale(bucket, item, uri, modified))
                self.ticker.tick("landing")

    def _stale(self, bucket: str, item: dict[str, Any], uri: str, modified: datetime) -> Finding:
        from lambda_ingest.events import ObjectRef
        from lambda_ingest.outcomes import processor

        detail = f"never ingested ({_age(modified, self.now)} old)"
        if not self.options.fix:
            return Finding(STALE_LANDING, uri, detail + "; --fix re-drives it", fixable=True)
        ref = ObjectRef(bucket, item["Key"], etag=str(item.get("ETag", "")).strip('"') or None)
        try:
            outcome = processor().process(ref)
        except IngestError as exc:
            return Finding(STALE_LANDING, uri, f"{detail}; re-drive failed: {exc.reason}", fixable=True)
        status = outcome.get("outcome")
        reason = f" ({outcome.get('reason')})" if outcome.get("reason") else ""
        return Finding(STALE_LANDING, uri, f"{detail}; re-driven: {status}{reason}", fixable=True, fixed=True)

    # archive bucket ------------------------------------------------------------------------------------

    def check_bucket(self) -> None:
        bucket = self.options.archive_bucket
        with ThreadPoolExecutor(max_workers=self.options.concurrency) as pool:
            for page in self._pages("list_object_versions", Bucket=bucket, Prefix=self.options.prefix):
                by_key: dict[str, list[dict[str, Any]]] = {}
                for version in page.get("Versions", []):
                    if self._recent(version["LastModified"]):
                        by_key.setdefault(version["Key"], []).append(version)
                # One page at a time: the pool finishes it before the next listing page is read.
                list(pool.map(lambda item: self._check_key(bucket, *item), by_key.items()))
                self.ticker.tick("bucket")

    def _registered(self, basename: str) -> dict[str, str]:
        """version key -> md5 of every version the archive registers under this basename."""
        body = self.archive.frames_page({"basename_exact": basename})
        return {
            str(v.get("key")): str(v.get("md5"))
            for frame in body.get("results", [])
            if frame.get("basename") == basename
            for v in frame.get("version_set") or []
        }

    def _check_key(self, bucket: str, key: str, versions: list[dict[str, Any]]) -> None:
        from lambda_ingest.record import split_filename

        if "/thumbnails/" in f"/{key}":
            self.report.scan("bucket_thumbnails_skipped", len(versions))
            return
        self.report.scan("bucket_versions", len(versions))
        basename, _ = split_filename(key.rsplit("/", 1)[-1])
        registered = self._registered(basename)
        for version in versions:
            if version["VersionId"] not in registered:
                finding = self._orphan(bucket, key, version, basename)
                if finding is not None:
                    self.report.add(finding)

    def _orphan(self, bucket: str, key: str, version: dict[str, Any], basename: str) -> Finding | None:
        from botocore.exceptions import ClientError

        from lambda_ingest import store

        version_id, modified = version["VersionId"], version["LastModified"]
        uri = f"s3://{bucket}/{key}?versionId={version_id}"
        try:
            md5 = self.s3.head_object(Bucket=bucket, Key=key, VersionId=version_id).get("Metadata", {}).get("md5")
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None  # removed since it was listed (an ingest's own sweep): nothing left to report
            raise store.translate(exc, f"head {uri}") from exc
        old_enough = (self.now - modified).total_seconds() >= self.options.min_age
        detail = f"not registered ({_age(modified, self.now)} old, md5 metadata {md5 or 'absent'})"
        fixable = bool(md5) and old_enough
        if not fixable:
            why = "too recent: an ingest may still register it" if md5 else "no md5 metadata: not this project's copy"
            return Finding(ORPHAN_VERSION, uri, f"{detail}; not fixable: {why}")
        if not self.options.fix:
            return Finding(ORPHAN_VERSION, uri, f"{detail}; --fix deletes it", fixable=True)
        if version_id in self._registered(basename):  # registered since it was listed: keep it
            return Finding(ORPHAN_VERSION, uri, f"{detail}; registered meanwhile, kept", fixed=True)
        store.delete_version(bucket, key, version_id)
        return Finding(ORPHAN_VERSION, uri, f"{detail}; deleted", fixable=True, fixed=True)

    # archive API -----------------------------------------------------------------------------------------

    def check_api(self) -> None:
        offset = 0
        with ThreadPoolExecutor(max_workers=self.options.concurrency) as pool:
            while not self._out_of_time():
                page = self.archive.frames_page({"limit": API_PAGE, "offset": offset})
                results = page.get("results") or []
                work = [(frame, version) for frame in results for version in frame.get("version_set") or []]
                list(pool.map(lambda item: self._check_version(*item), work))
                self.ticker.tick("api")
                if not page.get("next") or not results:
                    break
                offset += len(results)

    def _check_version(self, frame: dict[str, Any], version: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError

        from lambda_ingest import store

        created = version.get("created")
        if (
            self.options.since
            and created
            and datetime.fromisoformat(created.replace("Z", "+00:00")) < self.options.since
        ):
            return
        bucket, version_id = self.options.archive_bucket, str(version.get("key"))
        try:
            key = archive_key_for(frame, str(version.get("extension") or ""))
        except Exception as exc:  # the archive cannot build this path either: its URL cannot work
            self.report.scan("api_versions")
            uri = f"frame {frame.get('id')} {frame.get('basename')} version {version_id}"
            self.report.add(Finding(MISSING_OBJECT, uri, f"no archive key computable: {type(exc).__name__}: {exc}"))
            return
        if not key.startswith(self.options.prefix):
            return
        self.report.scan("api_versions")
        uri = f"s3://{bucket}/{key}?versionId={version_id}"
        try:
            head = self.s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (400, 404, 405):  # no such key or version (405: the version is a delete marker)
                self.report.add(Finding(MISSING_OBJECT, uri, f"registered as frame {frame.get('id')}; no object"))
                return
            raise store.translate(exc, f"head {uri}") from exc
        expected = str(version.get("md5"))
        found = (head.get("Metadata") or {}).get("md5")
        etag = str(head.get("ETag", "")).strip('"')
        if not found and PLAIN_MD5.match(etag) and not head.get("ServerSideEncryption", "").startswith("aws:kms"):
            found = etag  # a single-part upload without our metadata (e.g. ocs_ingester's): its ETag is its md5
        if found is None:
            self.report.scan("api_versions_md5_unverifiable")
        elif found != expected:
            self.report.add(Finding(MD5_MISMATCH, uri, f"archive md5 {expected}, object md5 {found}"))


def run_audit(
    options: AuditOptions, *, sink: Callable[[Finding], None] | None = None, progress: TextIO | None = None
) -> Report:
    report = Report(options, sink=sink)
    return Auditor(options, report, progress).run()


# --- command line -----------------------------------------------------------------------------------------


def add_parser(sub: Any) -> Any:
    """The `audit` subcommand's arguments (wired in cli.py)."""
    parser = sub.add_parser(
        "audit",
        help="check that the landing bucket, the archive bucket and the archive agree (exit 1 if not)",
        description="Reconcile the landing bucket (stale and rejected objects), the archive bucket (versions "
        "the archive does not register) and the archive API (registered versions without an object, md5 "
        "mismatches). Prints one line per finding, a summary table, and with --json a JSON report. Exit 0 "
        "when consistent, 1 when not (or when the audit could not finish). --fix repairs only what is "
        "provably safe; without it nothing is changed.",
    )
    parser.add_argument("--landing-bucket", help="landing bucket (default: $LANDING_BUCKET; none: no landing check)")
    parser.add_argument("--bucket", help="archive bucket (default: $BUCKET)")
    parser.add_argument("--api-root", help="Science Archive API root (default: $API_ROOT)")
    parser.add_argument("--auth-token", help="Science Archive API token (default: $AUTH_TOKEN)")
    parser.add_argument("--prefix", default="", help="audit only keys under this prefix (landing and archive keys)")
    parser.add_argument("--since", help="only objects/versions since: ISO date/time, or 90m, 36h, 7d")
    parser.add_argument(
        "--stale-after", type=int, default=DEFAULT_STALE_AFTER, metavar="SECONDS",
        help=f"a landing object older than this was never ingested (default {DEFAULT_STALE_AFTER})",
    )  # fmt: skip
    parser.add_argument(
        "--min-age", type=int, default=DEFAULT_MIN_AGE, metavar="SECONDS",
        help=f"--fix deletes orphan versions at least this old (default {DEFAULT_MIN_AGE}, SQS's longest "
        "visibility timeout)",
    )  # fmt: skip
    parser.add_argument(
        "--checks", default=",".join(CHECKS), metavar="LIST", help="comma-separated: landing,bucket,api (default all)"
    )
    parser.add_argument("--fix", action="store_true", help="repair what is provably safe (default: dry run)")
    parser.add_argument("--json", metavar="FILE", help="write the JSON report to FILE ('-' for stdout)")
    parser.add_argument("--concurrency", type=int, default=8, metavar="N", help="S3/archive calls in flight")
    parser.add_argument("--max-examples", type=int, default=100, metavar="N", help="findings kept per kind in JSON")
    return parser


def cmd_audit(args: Any, out: TextIO) -> int:
    from lambda_ingest.observability import quiet_engine
    from lambda_ingest.settings import get_settings, override_settings

    checks = tuple(c.strip() for c in args.checks.split(",") if c.strip())
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown or not checks:
        sys.stderr.write(f"lambda-ingest audit: error: --checks: unknown {', '.join(unknown) or '(none)'}\n")
        return 2
    override_settings(api_root=args.api_root, auth_token=args.auth_token, bucket=args.bucket)
    try:
        options = AuditOptions(
            archive_bucket=get_settings().bucket,
            landing_bucket=args.landing_bucket or get_settings().landing_bucket,
            prefix=args.prefix,
            since=parse_since(args.since),
            stale_after=args.stale_after,
            min_age=args.min_age,
            fix=args.fix,
            checks=checks,
            concurrency=max(1, args.concurrency),
            max_examples=args.max_examples,
        )
        json_to_stdout = args.json == "-"

        def sink(finding: Finding) -> None:
            if not json_to_stdout:
                out.write(finding.line() + "\n")
                out.flush()

        with quiet_engine(verbose=False):  # a re-driven object's engine logs and EMF stay off stdout
            report = run_audit(options, sink=sink, progress=sys.stderr)
    except IngestError as exc:
        sys.stderr.write(f"lambda-ingest: error: audit stopped: {exc}\n")
        return 1
    document = json.dumps(report.as_json(), indent=2, default=str)
    if json_to_stdout:
        out.write(document + "\n")
    else:
        out.write(report.table() + "\n")
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                handle.write(document + "\n")
    return 0 if report.inconsistencies == 0 and not report.incomplete else 1


# --- scheduled audit (Lambda) -----------------------------------------------------------------------------

_TIME_MARGIN_MS = 30_000  # stop this long before Lambda's timeout, so the counts are still published


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Scheduled audit: counts published as EMF metrics (AuditInconsistencies and one per finding).

    The schedule's event may narrow it: {"prefix": "...", "since": "36h", "checks": ["bucket", "api"]}.
    Never fixes anything. A run that reaches the time limit publishes AuditIncomplete=1.
    """
    return _scheduled(event or {}, context)


def _scheduled(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from aws_lambda_powertools.metrics import MetricUnit

    from lambda_ingest.observability import logger, metrics
    from lambda_ingest.settings import get_settings

    @logger.inject_lambda_context(log_event=True, clear_state=True)
    @metrics.log_metrics
    def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
        settings = get_settings()
        deadline = None
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            deadline = time.monotonic() + (context.get_remaining_time_in_millis() - _TIME_MARGIN_MS) / 1000
        options = AuditOptions(
            archive_bucket=settings.bucket,
            landing_bucket=settings.landing_bucket,
            prefix=str(event.get("prefix") or ""),
            since=parse_since(event.get("since")),
            checks=tuple(event.get("checks") or CHECKS),
            deadline=deadline,
        )
        report = run_audit(options)
        for kind, name in METRICS.items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=report.counts[kind])
        metrics.add_metric(name="AuditInconsistencies", unit=MetricUnit.Count, value=report.inconsistencies)
        metrics.add_metric(name="AuditIncomplete", unit=MetricUnit.Count, value=int(report.incomplete))
        summary = report.as_json()
        log = logger.warning if not summary["consistent"] else logger.info
        log("audit finished", extra={k: summary[k] for k in ("consistent", "inconsistencies", "counts", "scanned")})
        return {k: summary[k] for k in ("consistent", "incomplete", "inconsistencies", "counts", "scanned", "notes")}

    return run(event, context)
