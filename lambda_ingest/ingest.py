"""ingest_object(): one landing object into the archive bucket and the Science Archive.

No event knowledge here; the handler, the command line and the benchmark all call this.

    ranged GET of the first header blocks (also what a HEAD would say) -> rest of the header blocks ->
    ocs_archive record -> md5 (ETag or one stream) -> already registered? -> server-side copy (pinned)
    -> POST -> sweep orphans -> delete landing

For a small frame the critical path is three S3 round trips (first GET, copy, landing delete) and the POST:
the duplicate lookup runs beside the header read when the md5 is known up front (the ETag of a single-part
upload), the md5 stream of a small multipart upload beside the record's building, and the listing of the
archive key's versions (the orphan sweep) beside the copy.

Nothing is lost: the landing object is deleted only after the registration succeeded (or the bytes were
confirmed registered), and any failure after the copy deletes the archive version this attempt created.
Nothing is orphaned for good: every delivery that gets as far as finding the bytes registered sweeps the
archive key for unregistered copies of these bytes (a crash between copy and POST leaves one), so any
later delivery of the object removes what an earlier one left. Why every delivery, and why beside the copy:
docs/reliability.md, "Orphan sweep".
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lambda_ingest import clients, filestore, store
from lambda_ingest.archive import ArchiveClient, DuplicateMd5, ExistingVersion
from lambda_ingest.errors import (
    ArchiveUnavailableError,
    IngestError,
    ObjectChangedError,
    ObjectGoneError,
    RecordError,
    StorageAccessError,
)
from lambda_ingest.fits_header import BLOCK, HeaderLimits, walk_headers, walk_tar_member_headers
from lambda_ingest.observability import logger, stage
from lambda_ingest.record import (
    ArchiveRecord,
    build_record,
    datafile_class,
    header_stream,
    is_fits_class,
    is_tar_class,
    is_thumbnail_class,
    metadata_from_user_metadata,
    required_headers_for,
    split_filename,
)
from lambda_ingest.settings import Settings, get_settings
from lambda_ingest.sources import LandingObject, Source

MAX_VERSION_ID = 32  # the archive's column width for version keys
# A multipart landing object up to this size streams its md5 while its record is built (a round trip or
# two saved per small frame); a larger one only once its record is valid, so a bad file costs no stream.
EARLY_MD5_MAX = 64 * 1024 * 1024


@dataclass
class IngestResult:
    status: str  # "ingested" | "already_ingested"
    bucket: str
    key: str
    basename: str
    filename: str
    archive_key: str
    version_id: str | None
    md5: str
    frame_id: int | None
    header_bytes_read: int
    size: int
    bytes_copied: int = 0
    url: str | None = None
    observation_end: datetime | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        """The fields of the one structured log line per outcome."""
        return {
            "outcome": self.status,
            "bucket": self.bucket,
            "key": self.key,
            "md5": self.md5,
            "basename": self.basename,
            "archive_key": self.archive_key,
            "version_id": self.version_id,
            "frame_id": self.frame_id,
            "bytes": self.size,
            "bytes_copied": self.bytes_copied,
            "header_bytes_read": self.header_bytes_read,
            "durations_ms": self.timings_ms,
        }


def header_limits(settings: Settings) -> HeaderLimits:
    return HeaderLimits(
        max_bytes=settings.header_max_bytes,
        max_cards=settings.header_max_cards,
        max_hdus=settings.header_max_hdus,
        tar_max_scan_bytes=settings.tar_max_scan_bytes,
    )


def read_record(
    source: Source,
    file_metadata: dict[str, Any] | None = None,
    *,
    required_headers: tuple[str, ...] | None = None,
    blacklist_headers: tuple[str, ...] | None = None,
) -> tuple[ArchiveRecord, int]:
    """Build the archive record from the source's header blocks; returns (record, bytes read)."""
    settings = get_settings()
    filename = source.filename
    _, extension = split_filename(filename)
    cls = datafile_class(extension)
    required = required_headers or required_headers_for(cls)
    limits = header_limits(settings)
    if is_tar_class(cls):
        with source.stream() as body:
            tar_bytes, bytes_read = walk_tar_member_headers(body, cls._get_meta_file_from_targz, required, limits)
        stream = header_stream(tar_bytes, filename)
    elif is_fits_class(cls):
        scan = walk_headers(source.read_range, source.size, required, limits)
        if scan.validated_hdu is None and not file_metadata:
            missing = ", ".join(scan.missing)
            raise RecordError(f"missing required header{'s' if len(scan.missing) > 1 else ''} {missing}")
        stream, bytes_read = header_stream(scan.fits_bytes, filename), scan.bytes_read
    else:
        # Non-FITS products (.pdf, thumbnails): ocs_ingester's file_metadata, here from S3 user metadata.
        file_metadata = {**metadata_from_user_metadata(source.metadata), **(file_metadata or {})}
        missing = [name for name in required if name not in file_metadata]
        if missing:
            raise RecordError(
                f"missing required metadata {', '.join(missing)} (S3 user metadata x-amz-meta-<name>, "
                "or --metadata NAME=VALUE)"
            )
        stream, bytes_read = header_stream(b"", filename), 0
    record = build_record(
        stream, filename, file_metadata, required_headers=required_headers, blacklist_headers=blacklist_headers
    )
    return record, bytes_read


def storage_class_for(record: ArchiveRecord, settings: Settings) -> str:
    """STANDARD_IA straight away for old observations (as ocs_ingester); lifecycle rules do the rest."""
    observed = record.observation_date
    if observed and observed < datetime.now(UTC) - timedelta(days=settings.s3_days_to_ia_storage):
        return "STANDARD_IA"
    return "STANDARD"


def put_into_archive(source: Source, record: ArchiveRecord, md5: str, settings: Settings) -> str:
    """Copy (or upload) the source to its canonical key; the md5 in the metadata lets a sweep recognise it."""
    return source.put_into_archive(
        settings.bucket,
        record.archive_key,
        content_type=record.content_type,
        content_disposition=record.content_disposition,
        storage_class=storage_class_for(record, settings),
        metadata={"md5": md5},
    )


def ingest_object(
    bucket: str,
    key: str,
    version_id: str | None = None,
    etag: str | None = None,
    *,
    file_metadata: dict[str, Any] | None = None,
) -> IngestResult:
    """Ingest one landing object. Raises the errors of `lambda_ingest.errors`, naming the object.

    Pinned to `version_id`, else to the event's `etag`. The duplicate lookup starts at once when `etag` is
    an md5 (checked against the object's own ETag once read).
    """
    try:
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="ingest") as pool:
            lookup = _Lookup.start(pool, key.rsplit("/", 1)[-1], (etag or "").strip('"'))
            first_read = header_limits(get_settings()).initial_read
            source = LandingObject.open(bucket, key, version_id, etag, math.ceil(first_read / BLOCK) * BLOCK)
            return ingest_source(source, file_metadata=file_metadata, pool=pool, lookup=lookup)
    except IngestError as exc:
        raise exc.for_object(f"s3://{bucket}/{key}") from exc.__cause__


def ingest_source(
    source: Source,
    *,
    file_metadata: dict[str, Any] | None = None,
    required_headers: tuple[str, ...] | None = None,
    blacklist_headers: tuple[str, ...] | None = None,
    archive: ArchiveClient | None = None,
    pool: ThreadPoolExecutor | None = None,
    lookup: _Lookup | None = None,
) -> IngestResult:
    """Ingest one source (a landing object or a local file), in five steps:

    1. read the header blocks and build the archive record; a product described by metadata (.pdf) whose
       record fails is still "already ingested" when the archive holds its bytes;
    2. the md5: the ETag, else one stream (begun beside step 1 for a small multipart landing object);
    3. the archive's version of these bytes, if any (asked beside step 1 when the md5 is known up front);
    4. if none: copy into the archive bucket (listing the key's versions meanwhile) and register the copy;
    5. remove the copies of these bytes earlier attempts left unregistered, then the landing object.
    """
    with ExitStack() as stack:
        pool = pool or stack.enter_context(ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest"))
        steps = _Steps(source, pool, archive, lookup)
        try:
            record = steps.read(file_metadata, required_headers, blacklist_headers)
        except RecordError:
            result = steps.registered_product()
            if result is None:
                raise
        else:
            result = steps.registered(record) or steps.copy_and_register(record)
        steps.finish(result)
    return result


@dataclass
class _Lookup:
    """The archive's version of (basename, md5), asked in a thread while the headers are read."""

    basename: str
    md5: str
    future: Future[ExistingVersion | None]

    @classmethod
    def start(cls, pool: ThreadPoolExecutor, filename: str, md5: str | None) -> _Lookup | None:
        """Started only with an md5 and for a product the archive looks up (not a thumbnail): the basename
        is ocs_archive's, from the file name alone, and the md5 is checked against the object's later."""
        basename, extension = split_filename(filename)
        try:
            cls_ = datafile_class(extension)
        except RecordError:
            return None
        if not md5 or not store.PLAIN_MD5.match(md5) or not basename or is_thumbnail_class(cls_):
            return None
        return cls(basename, md5, pool.submit(lambda: clients.archive().find_version(basename, md5)))

    def answer(self, basename: str, md5: str) -> tuple[bool, ExistingVersion | None]:
        """(whether this lookup asked about these bytes, its answer)."""
        if (basename, md5) != (self.basename, self.md5):
            return False, None
        return True, self.future.result()


class _Steps:
    """The state one ingest carries from step to step (see `ingest_source`)."""

    def __init__(
        self, source: Source, pool: ThreadPoolExecutor, archive: ArchiveClient | None, lookup: _Lookup | None
    ) -> None:
        self.source, self.pool, self._archive, self.settings = source, pool, archive, get_settings()
        self.timings: dict[str, float] = {}
        self.lookup = lookup or _Lookup.start(pool, source.filename, source.known_md5())
        self.md5_future: Future[str] | None = None
        self.sweep: tuple[str, set[str], Future[list[str]] | None] | None = None  # (key, keep, listing)

    @property
    def archive(self) -> ArchiveClient:
        # The token is needed only once a file is valid, as ocs_ingester does (or by the early lookup).
        if self._archive is None:
            self._archive = clients.archive()
        return self._archive

    def read(self, file_metadata: Any, required: Any, blacklist: Any) -> ArchiveRecord:
        source = self.source
        if isinstance(source, LandingObject) and source.known_md5() is None and source.size <= EARLY_MD5_MAX:
            # A multipart upload must be streamed for its md5: small ones stream while the record is built
            # (a bad file wastes at most EARLY_MD5_MAX bytes of reads; larger ones wait for a valid record).
            self.md5_future = self.pool.submit(source.md5)
        with stage("header_read", self.timings):
            record, self.header_bytes = read_record(
                source, file_metadata, required_headers=required, blacklist_headers=blacklist
            )
        return record

    def md5(self) -> str:
        with stage("md5", self.timings):
            return self.source.known_md5() or (self.md5_future.result() if self.md5_future else self.source.md5())

    def find(self, basename: str, md5: str) -> ExistingVersion | None:
        asked, existing = self.lookup.answer(basename, md5) if self.lookup else (False, None)
        return existing if asked else self.archive.find_version(basename, md5)

    def registered(self, record: ArchiveRecord) -> IngestResult | None:
        """Steps 2 and 3: the already_ingested result when the archive holds these bytes, else None."""
        md5 = self.md5()
        self.result = self._result(record, md5)
        if record.is_thumbnail:
            return None
        with stage("lookup", self.timings):
            existing = self.find(record.basename, md5)
        if existing is None:
            return None
        self.sweep = (record.archive_key, {existing.key}, None)
        return _already(self.result, existing)

    def copy_and_register(self, record: ArchiveRecord) -> IngestResult:
        """Step 4: copy, then POST; a failure after the copy takes the copy back unless the archive may
        have registered it. Another delivery registering the bytes first ends as already_ingested."""
        source, bucket, result = self.source, self.settings.bucket, self.result
        listing = None if record.is_thumbnail else self.pool.submit(source.archive_versions, bucket, record.archive_key)
        with stage("copy", self.timings):
            new_version = put_into_archive(source, record, result.md5, self.settings)
        result.version_id, result.bytes_copied = new_version, source.size
        try:
            body = self._register(record, new_version)
        except DuplicateMd5:
            # Confirm which version holds the bytes before deleting anything: if this lookup fails, the
            # copy stays for the redelivery's sweep and the landing object is untouched. Then the refused
            # copy goes, not best effort: a failed delete fails the record before the landing delete.
            existing = self.archive.find_version(record.basename, result.md5)
            source.discard_from_archive(bucket, record.archive_key, new_version)
            result.bytes_copied, result.version_id = 0, None
            self.sweep = (record.archive_key, {existing.key} if existing else set(), None)
            return _already(result, existing)
        result.url, result.record = body.get("url"), _payload(record, new_version, result.md5)
        if record.is_thumbnail:
            # thumbnails/ is an upsert (newest key wins) and the archive deletes nothing from the bucket: the
            # versions this one replaced are no longer referenced by anything (a local file store keeps none).
            if filestore.uses_s3(self.settings):
                _remove_replaced_thumbnails(bucket, record.archive_key, new_version)
            return result
        result.frame_id = body.get("id")
        registered = {v.get("key") for v in body.get("version_set") or [] if isinstance(v, dict)}
        self.sweep = (record.archive_key, registered | {new_version}, listing)
        return result

    def _register(self, record: ArchiveRecord, new_version: str) -> dict[str, Any]:
        bucket, key = self.settings.bucket, record.archive_key
        try:
            if len(new_version) > MAX_VERSION_ID:
                raise StorageAccessError(
                    f"the archive bucket issued VersionId {new_version!r} ({len(new_version)} characters); "
                    f"the archive stores at most {MAX_VERSION_ID} (AWS S3 issues 32)"
                )
            with stage("register", self.timings):
                return self.archive.post(_endpoint(record), _payload(record, new_version, self.result.md5))
        except DuplicateMd5:
            raise
        except ArchiveUnavailableError as exc:
            if not exc.maybe_applied:
                _discard_copy(self.source, bucket, key, new_version)
                raise
            # The archive may have registered this version all the same (a 500 after its commit, a timeout
            # while it worked): deleting the copy could leave a registered version without bytes. Keep it;
            # the next delivery finds the registration, or else its sweep removes this copy.
            logger.warning(
                "registration outcome unknown; keeping the archive copy for the next delivery to reconcile",
                extra={"archive_key": key, "version_id": new_version, "error": exc.reason},
            )
            raise
        except BaseException:
            _discard_copy(self.source, bucket, key, new_version)
            raise

    def registered_product(self) -> IngestResult | None:
        """Step 1's fallback: the archive's version of a metadata product's bytes (no record, no sweep)."""
        return _registered_product(self.source, self._archive)

    def finish(self, result: IngestResult) -> None:
        """Step 5."""
        if self.sweep is not None:
            key, keep, listing = self.sweep
            _sweep_orphans(self.source, self.settings.bucket, key, result.md5, keep, listing)
        if not self.settings.keep_landing_object and isinstance(self.source, LandingObject):
            _remove_landing(self.source)

    def _result(self, record: ArchiveRecord, md5: str) -> IngestResult:
        bucket, _, key = self.source.name.removeprefix("s3://").partition("/")
        is_s3 = self.source.name.startswith("s3://")
        return IngestResult(
            status="ingested",
            bucket=bucket if is_s3 else "",
            key=key if is_s3 else self.source.name,
            basename=record.basename,
            filename=record.filename,
            archive_key=record.archive_key,
            version_id=None,
            md5=md5,
            frame_id=None,
            header_bytes_read=self.header_bytes,
            size=self.source.size,
            observation_end=record.observation_end(_end_time_key()),
            timings_ms=self.timings,
            record=record.payload,
        )


def _already(result: IngestResult, existing: ExistingVersion | None) -> IngestResult:
    result.status, result.version_id = "already_ingested", existing.key if existing else None
    if existing is not None:
        result.frame_id, result.url = existing.frame_id, existing.url
    return result


def _registered_product(source: Source, archive: ArchiveClient | None) -> IngestResult | None:
    """For a product whose record comes from metadata (not FITS, not a thumbnail): the archive's version of
    these bytes under its basename, as an already_ingested result; None otherwise."""
    basename, extension = split_filename(source.filename)
    try:
        cls = datafile_class(extension)
    except RecordError:
        return None
    if is_fits_class(cls) or is_tar_class(cls) or is_thumbnail_class(cls) or not basename:
        return None
    md5 = source.known_md5() or source.md5()
    existing = (archive or clients.archive()).find_version(basename, md5)
    if existing is None:
        return None
    bucket, _, key = source.name.removeprefix("s3://").partition("/")
    is_s3 = source.name.startswith("s3://")
    return IngestResult(
        status="already_ingested",
        bucket=bucket if is_s3 else "",
        key=key if is_s3 else source.name,
        basename=basename,
        filename=basename + extension,
        archive_key="",  # unknown without valid metadata; the archive's version says where the bytes are
        version_id=existing.key,
        md5=md5,
        frame_id=existing.frame_id,
        header_bytes_read=0,
        size=source.size,
        url=existing.url,
    )


def _end_time_key() -> str:
    from lambda_ingest.settings import ocs_archive_settings

    return str(ocs_archive_settings().OBSERVATION_END_TIME_KEY)


def _endpoint(record: ArchiveRecord) -> str:
    return "thumbnails/" if record.is_thumbnail else "frames/"


def _payload(record: ArchiveRecord, version_key: str, md5: str) -> dict[str, Any]:
    payload = dict(record.payload)
    payload["version_set"] = [{"key": version_key, "md5": md5, "extension": record.extension}]
    if record.is_thumbnail:
        # thumbnails/ takes the version's key and extension at the top level.
        payload.update({"key": version_key, "extension": record.extension})
    return payload


def _discard_copy(source: Source, bucket: str, key: str, version_id: str) -> None:
    """Failure after the copy: remove the version this attempt created, so no orphan stays."""
    try:
        source.discard_from_archive(bucket, key, version_id)
    except IngestError as exc:
        # The original error matters more; the next delivery's sweep removes this version.
        logger.warning(
            "could not delete the archive copy of a failed attempt",
            extra={"archive_key": key, "version_id": version_id, "error": str(exc)},
        )


def _sweep_orphans(
    source: Source, bucket: str, key: str, md5: str, keep: set[str], listing: Future[list[str]] | None = None
) -> None:
    """Delete archive versions of these bytes left by an earlier attempt that crashed before POST.

    Only versions carrying this md5 (the copy's metadata) and not registered are removed, so a
    concurrent ingest of different bytes under the same basename is never touched. `listing`: the key's
    versions, listed beside the copy; only a key holding other versions than `keep` costs more requests.
    """
    try:
        versions = listing.result() if listing is not None else None
        for version_id in source.unregistered_archive_copies(bucket, key, md5, keep, versions):
            logger.info("removing orphaned archive version", extra={"archive_key": key, "version_id": version_id})
            source.discard_from_archive(bucket, key, version_id)
    except IngestError as exc:
        # Housekeeping only: the bytes are registered, so this must not fail (or reject) the ingest.
        logger.warning("could not sweep orphaned archive versions", extra={"archive_key": key, "error": str(exc)})


def _remove_replaced_thumbnails(bucket: str, key: str, registered: str) -> None:
    """Delete the versions of a thumbnail key older than the one just registered (housekeeping only)."""
    try:
        for version_id in store.versions_older_than(bucket, key, registered):
            logger.info("removing replaced thumbnail version", extra={"archive_key": key, "version_id": version_id})
            store.delete_version(bucket, key, version_id)
    except IngestError as exc:
        logger.warning("could not remove replaced thumbnail versions", extra={"archive_key": key, "error": str(exc)})


def _remove_landing(source: LandingObject) -> None:
    try:
        source.remove()
    except ObjectChangedError:
        # Overwritten after it was read: the newer upload stays for its own event to ingest.
        logger.warning(
            "landing object replaced during the ingest; kept for its own event",
            extra={"object": source.name, "etag": source.obj.etag},
        )
    except ObjectGoneError:
        pass  # already removed (a concurrent delivery of the same object)
