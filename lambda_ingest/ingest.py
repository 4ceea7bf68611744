"""ingest_object(): one landing object into the archive bucket and the Science Archive.

No event knowledge here; the handler, the command line and the benchmark all call this.

    HEAD -> header blocks (ranged GETs) -> ocs_archive record -> md5 (ETag or one stream)
         -> already registered? -> server-side copy (pinned) -> POST -> sweep orphans -> delete landing

Nothing is lost: the landing object is deleted only after the registration succeeded (or the bytes were
confirmed registered), and any failure after the copy deletes the archive version this attempt created.
Nothing is orphaned for good: every delivery that gets as far as finding the bytes registered sweeps the
archive key for unregistered copies of these bytes (a crash between copy and POST leaves one), so any
later delivery of the object removes what an earlier one left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lambda_ingest import clients, filestore, store
from lambda_ingest.archive import ArchiveClient, DuplicateMd5
from lambda_ingest.errors import (
    ArchiveUnavailableError,
    IngestError,
    ObjectChangedError,
    ObjectGoneError,
    RecordError,
    StorageAccessError,
)
from lambda_ingest.fits_header import HeaderLimits, walk_headers, walk_tar_member_headers
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
    landing_deleted: bool = False
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
        initial_read=settings.header_initial_read,
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

    The orphan sweep always runs: a receive count of 1 does not prove no earlier attempt ran (S3 may send
    one notification twice, each its own SQS message), so skipping it could leave a crashed copy for good.
    """
    try:
        obj = store.head(bucket, key, version_id)
        if etag and not version_id and obj.etag != etag.strip('"'):
            raise ObjectChangedError(
                f"the landing object was overwritten after the event (event ETag {etag.strip(chr(34))}, "
                f"now {obj.etag}); the newer upload is ingested through its own event"
            )
        return ingest_source(LandingObject(obj), file_metadata=file_metadata)
    except IngestError as exc:
        raise exc.for_object(f"s3://{bucket}/{key}") from exc.__cause__


def ingest_source(
    source: Source,
    *,
    file_metadata: dict[str, Any] | None = None,
    required_headers: tuple[str, ...] | None = None,
    blacklist_headers: tuple[str, ...] | None = None,
    archive: ArchiveClient | None = None,
    check_only: bool = False,
    sweep: bool = True,
) -> IngestResult:
    """The steps after HEAD, for any source (landing object or local file)."""
    settings = get_settings()
    timings: dict[str, float] = {}
    try:
        with stage("header_read", timings):
            record, header_bytes = read_record(
                source, file_metadata, required_headers=required_headers, blacklist_headers=blacklist_headers
            )
    except RecordError:
        # A product described by metadata (.pdf) whose bytes the archive already holds is already ingested,
        # whatever its metadata says (as ocs_ingester's md5 check, which needs no record): ask before rejecting.
        registered = _registered_product(source, archive)
        if registered is None:
            raise
        if not check_only:
            _finish(source, registered, settings)
        return registered
    with stage("md5", timings):
        md5 = source.known_md5() or source.md5()
    # The token is needed only now: a file is validated first, as ocs_ingester does.
    archive = archive or clients.archive()
    bucket, _, key = source.name.removeprefix("s3://").partition("/")
    result = IngestResult(
        status="ingested",
        bucket=bucket if source.name.startswith("s3://") else "",
        key=key if source.name.startswith("s3://") else source.name,
        basename=record.basename,
        filename=record.filename,
        archive_key=record.archive_key,
        version_id=None,
        md5=md5,
        frame_id=None,
        header_bytes_read=header_bytes,
        size=source.size,
        observation_end=record.observation_end(_end_time_key()),
        timings_ms=timings,
        record=record.payload,
    )
    if not record.is_thumbnail:
        with stage("lookup", timings):
            existing = archive.find_version(record.basename, md5)
        if existing is not None:
            result.status, result.version_id = "already_ingested", existing.key
            result.frame_id, result.url = existing.frame_id, existing.url
            if not check_only:
                if sweep:
                    _sweep_orphans(source, settings.bucket, record.archive_key, md5, keep={existing.key})
                _finish(source, result, settings)
            return result
    if check_only:
        result.status = "not_ingested"
        return result

    with stage("copy", timings):
        new_version = put_into_archive(source, record, md5, settings)
    result.version_id, result.bytes_copied = new_version, source.size
    payload = _payload(record, new_version, md5)
    try:
        if len(new_version) > MAX_VERSION_ID:
            raise StorageAccessError(
                f"the archive bucket issued VersionId {new_version!r} ({len(new_version)} characters); "
                f"the archive stores at most {MAX_VERSION_ID} (AWS S3 issues 32)"
            )
        with stage("register", timings):
            body = archive.post(_endpoint(record), payload)
    except DuplicateMd5:
        # Another delivery (or a byte-identical file under another name) registered these bytes first.
        # Confirm which version holds them before deleting anything: if this lookup fails, the copy stays
        # for the redelivery's sweep and the landing object is untouched.
        existing = archive.find_version(record.basename, md5)
        # Refused, so never registered. Not best effort: if this delete fails the record fails before the
        # landing object is removed, and the redelivery's sweep removes the copy.
        source.discard_from_archive(settings.bucket, record.archive_key, new_version)
        result.status, result.bytes_copied = "already_ingested", 0
        result.version_id = existing.key if existing else None
        if existing is not None:
            result.frame_id, result.url = existing.frame_id, existing.url
        # Copies kept by earlier attempts whose registration outcome was unknown, and not registered.
        _sweep_orphans(source, settings.bucket, record.archive_key, md5, keep={existing.key} if existing else set())
        _finish(source, result, settings)
        return result
    except ArchiveUnavailableError as exc:
        if exc.maybe_applied:
            # The archive may have registered this version all the same (a 500 after its commit, a timeout
            # while it worked): deleting the copy could leave a registered version without bytes. Keep it;
            # the next delivery finds the registration, or else its sweep removes this copy.
            logger.warning(
                "registration outcome unknown; keeping the archive copy for the next delivery to reconcile",
                extra={"archive_key": record.archive_key, "version_id": new_version, "error": exc.reason},
            )
        else:
            _discard_copy(source, settings.bucket, record.archive_key, new_version)
        raise
    except BaseException:
        _discard_copy(source, settings.bucket, record.archive_key, new_version)
        raise
    result.url = body.get("url")
    result.record = payload
    if record.is_thumbnail:
        # thumbnails/ is an upsert (newest key wins) and the archive deletes nothing from the bucket: the
        # versions this one replaced are no longer referenced by anything (a local file store keeps none).
        if filestore.uses_s3(settings):
            _remove_replaced_thumbnails(settings.bucket, record.archive_key, new_version)
    else:
        result.frame_id = body.get("id")
        registered = {v.get("key") for v in body.get("version_set") or [] if isinstance(v, dict)}
        if sweep:
            _sweep_orphans(source, settings.bucket, record.archive_key, md5, keep=registered | {new_version})
    _finish(source, result, settings)
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


def _sweep_orphans(source: Source, bucket: str, key: str, md5: str, keep: set[str]) -> None:
    """Delete archive versions of these bytes left by an earlier attempt that crashed before POST.

    Only versions carrying this md5 (the copy's metadata) and not registered are removed, so a
    concurrent ingest of different bytes under the same basename is never touched.
    """
    try:
        for version_id in source.unregistered_archive_copies(bucket, key, md5, keep):
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


def _finish(source: Source, result: IngestResult, settings: Settings) -> None:
    if not settings.keep_landing_object and isinstance(source, LandingObject):
        try:
            source.remove()
        except ObjectChangedError:
            # Overwritten after it was read: the newer upload stays for its own event to ingest.
            logger.warning(
                "landing object replaced during the ingest; kept for its own event",
                extra={"object": source.name, "etag": source.obj.etag},
            )
            return
        except ObjectGoneError:
            pass  # already removed (a concurrent delivery of the same object)
        result.landing_deleted = True
