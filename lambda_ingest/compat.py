"""ocs_ingester's Python API (`ocs_ingester.ingester`), on lambda_ingest's engine.

Switch with one line:

    from ocs_ingester import ingester          ->   import lambda_ingest as ingester
    from ocs_ingester.exceptions import ...    ->   from lambda_ingest import ...   (same names)

Same names, arguments and return values; they take file objects as ocs_ingester does, and run the engine's
code (header-block record, md5, upload, registration with orphan cleanup), not a second implementation.
Files are stored where FILESTORE_TYPE says (s3, local, dummy: `filestore.py`), as ocs_ingester does.

Exceptions: every failure leaves these functions as one of ocs_ingester's four families, none a subclass of
another (`lambda_ingest.errors` draws the tree), so a caller's except chain works unchanged:

- DoNotRetryError: the file is at fault (rejected), or the system is (a missing token or invalid setting,
  a refused token, a wrong API_ROOT, a missing bucket): retrying the same call cannot help.
- NonFatalDoNotRetryError: the archive already holds these bytes.
- BackoffRetryError: archive 5xx/408/429, timeouts and refused connections, S3 (or local disk) unavailable.
- RetryError: never raised (see errors.py).

Validation of the file comes first, as in ocs_ingester: the token is needed only once the file is known to
be valid. Differences, all on purpose:

- `frame_exists` really checks: the live archive ignores `versions/?md5=` (which made ocs_ingester report
  every file as present once the archive held any), so the md5 is compared among the versions of the
  file's basename (`frames/?basename_exact=`).
- Every HTTP call has a timeout; a refused connection is a BackoffRetryError (ocs_ingester let requests'
  ConnectionError escape every family), and so are 408 and 429 (ocs_ingester: DoNotRetryError).
- A failed registration deletes the archive object version it uploaded (no orphans).
- A missing token or an invalid setting is a DoNotRetryError (ConfigurationError) naming the variable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, BinaryIO, ParamSpec, TypeVar, cast

from lambda_ingest import clients
from lambda_ingest.archive import ArchiveClient, DuplicateMd5, ExistingVersion
from lambda_ingest.errors import (
    AlreadyIngestedError,
    ArchiveRejectedError,
    BackoffRetryError,
    DoNotRetryError,
    NonFatalDoNotRetryError,
    RecordError,
    RetryError,
    TransientError,
)
from lambda_ingest.filestore import translate_os_error
from lambda_ingest.ingest import ingest_source, put_into_archive, read_record
from lambda_ingest.observability import opentsdb
from lambda_ingest.record import split_filename
from lambda_ingest.settings import get_settings
from lambda_ingest.sources import LocalFile, Source

FAMILIES = (DoNotRetryError, NonFatalDoNotRetryError, RetryError, BackoffRetryError)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _in_families(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Nothing leaves ocs_ingester's API outside its four families: its callers' except chains (BANZAI's
    `post_to_ingester`) have no other clause, so anything else would end their process."""

    @functools.wraps(func)
    def api_call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except FAMILIES:
            raise
        except TransientError as exc:  # the family base, were it ever raised bare
            raise BackoffRetryError(exc.reason, obj=exc.obj) from exc
        except OSError as exc:  # the caller's file object failed under us (a network file system, ...)
            raise translate_os_error(exc, "reading the file") from exc
        except Exception as exc:  # a fault nothing classified: the same call would meet it again
            raise DoNotRetryError(f"unexpected error: {type(exc).__name__}: {exc}") from exc

    return api_call


class _DeferredArchive:
    """The archive client, made at its first use: the file is validated before the token is needed."""

    def __init__(self, make: Callable[[], ArchiveClient]) -> None:
        self._make = make
        self._client: ArchiveClient | None = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._make()
        return getattr(self._client, name)


def _archive(api_root: str | None, auth_token: str | None) -> ArchiveClient:
    def make() -> ArchiveClient:
        if api_root is None and auth_token is None:
            return cast(ArchiveClient, clients.archive())
        settings = get_settings().with_overrides(api_root=api_root)
        return ArchiveClient(settings, auth_token or clients.archive_token())

    return cast(ArchiveClient, _DeferredArchive(make))


def _thumbnail_metadata(
    file_metadata: dict[str, Any] | None, is_thumbnail: bool, thumbnail_size: str | None
) -> tuple[dict[str, Any], tuple[str, ...] | None]:
    metadata = dict(file_metadata or {})
    if not is_thumbnail:
        return metadata, None
    if thumbnail_size is None:
        raise RecordError("thumbnail_size must be provided for thumbnail files")
    from lambda_ingest.settings import ocs_archive_settings

    archive_settings = ocs_archive_settings()
    metadata[archive_settings.THUMBNAIL_SIZE_KEY] = thumbnail_size
    return metadata, tuple(archive_settings.REQUIRED_THUMBNAIL_METADATA)


def find_existing(source: Source, archive: ArchiveClient | None = None) -> ExistingVersion | None:
    """The archive's version holding these bytes under this file's basename, if any.

    Like ocs_ingester's check, it needs only the name and the md5, not valid headers.
    """
    basename, _ = split_filename(source.filename)
    if not basename:
        raise RecordError("the file name has no basename")
    return (archive or clients.archive()).find_version(basename, source.known_md5() or source.md5())


@_in_families
def frame_exists(fileobj: BinaryIO, api_root: str | None = None, auth_token: str | None = None) -> bool:
    """True when the archive already holds a file with this file's bytes (md5) under its basename.

    The file object needs a name (`open()` gives one); for others set `fileobj.name`.
    """
    return find_existing(LocalFile(fileobj), _archive(api_root, auth_token)) is not None


@_in_families
def validate_fits_and_create_archive_record(
    fileobj: BinaryIO,
    path: str | None = None,
    file_metadata: dict[str, Any] | None = None,
    required_headers: tuple[str, ...] | None = None,
    blacklist_headers: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The archive record (without version_set) built from the file's headers."""
    record, _ = read_record(
        LocalFile(fileobj, path),
        file_metadata,
        required_headers=required_headers,
        blacklist_headers=blacklist_headers,
    )
    return dict(record.payload)


@_in_families
def upload_file_to_file_store(
    fileobj: BinaryIO, path: str | None = None, file_metadata: dict[str, Any] | None = None
) -> dict[str, str]:
    """Store the file at its canonical path in the FILESTORE_TYPE store; returns ocs_ingester's version dict
    {'key', 'md5', 'extension'} (the key is the S3 VersionId, or the md5 for the local and dummy stores)."""
    source = LocalFile(fileobj, path)
    settings = get_settings()
    record, _ = read_record(source, file_metadata)
    md5 = source.md5()
    version = put_into_archive(source, record, md5, settings)
    return {"key": version, "md5": md5, "extension": record.extension}


@_in_families
def ingest_archive_record(
    version: dict[str, str],
    record: dict[str, Any],
    api_root: str | None = None,
    auth_token: str | None = None,
) -> dict[str, Any]:
    """POST the record with this version; returns the record plus frameid, filename and url."""
    archive = _archive(api_root, auth_token)
    record["version_set"] = [version]
    try:
        result = archive.post("frames/", record)
    except DuplicateMd5:
        raise ArchiveRejectedError("version with this md5 already exists", status=400) from None
    record["frameid"] = result.get("id")
    record["filename"] = result.get("filename")
    record["url"] = result.get("url")
    return record


@_in_families
def upload_file_and_ingest_to_archive(
    fileobj: BinaryIO,
    path: str | None = None,
    file_metadata: dict[str, Any] | None = None,
    required_headers: tuple[str, ...] | None = None,
    blacklist_headers: tuple[str, ...] | None = None,
    api_root: str | None = None,
    auth_token: str | None = None,
    is_thumbnail: bool = False,
    thumbnail_size: str | None = None,
) -> dict[str, Any]:
    """Upload and register in one step. Raises NonFatalDoNotRetryError when the file is already there."""
    metadata, thumbnail_required = _thumbnail_metadata(file_metadata, is_thumbnail, thumbnail_size)
    result = ingest_source(
        LocalFile(fileobj, path),
        file_metadata=metadata,
        required_headers=thumbnail_required or required_headers,
        blacklist_headers=blacklist_headers,
        archive=_archive(api_root, auth_token),
    )
    if result.status != "ingested":
        raise AlreadyIngestedError("Version with this md5 already exists", obj=result.filename)
    opentsdb.record(result)  # ocs_ingester's metrics (when OPENTSDB_HOSTNAME is set)
    record = dict(result.record)
    if is_thumbnail:
        # As ocs_ingester's post_thumbnail: the record plus the id the archive gave the thumbnail.
        record["thumbnail_id"] = result.frame_id
    else:
        record.update({"frameid": result.frame_id, "filename": result.filename, "url": result.url})
    return record


__all__ = [
    "BackoffRetryError",
    "DoNotRetryError",
    "NonFatalDoNotRetryError",
    "RetryError",
    "find_existing",
    "frame_exists",
    "ingest_archive_record",
    "upload_file_and_ingest_to_archive",
    "upload_file_to_file_store",
    "validate_fits_and_create_archive_record",
]
