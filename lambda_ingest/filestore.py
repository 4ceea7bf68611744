"""Where a local file goes: ocs_archive's file stores, chosen by FILESTORE_TYPE as in ocs_ingester.

| FILESTORE_TYPE | stored at                                        | version key          |
|----------------|--------------------------------------------------|----------------------|
| s3 (default)   | BUCKET/<canonical path>, a new object version    | the S3 VersionId     |
| local          | FILESYSTEM_STORAGE_ROOT_DIR/<canonical path>     | the md5 (no versions)|
| dummy          | nowhere                                          | the md5              |

The class comes from ocs_archive's `FileStoreFactory`; `local` and `dummy` store through ocs_archive's own
classes, so path and version key are exactly ocs_ingester's. `s3` stays on this project's S3 adapter
(`store.upload_to_archive`): ocs_archive's S3Store has no timeouts, turns every error into one retryable
class and leaves no md5 on the object for the orphan sweep. The Lambda copies S3 to S3 only:
`require_s3_filestore` refuses any other type at the function's start.
"""

from __future__ import annotations

import errno
import os
from typing import Any, BinaryIO

from lambda_ingest.errors import (
    ConfigurationError,
    IngestError,
    RecordError,
    StorageAccessError,
    StorageUnavailableError,
)
from lambda_ingest.settings import Settings

# I/O errors a later attempt can clear (a busy or flaky network file system, a full disk being cleaned up).
_TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.EBUSY, errno.ESTALE, errno.ENOSPC}
_TRANSIENT_ERRNOS |= {getattr(errno, "EDQUOT", errno.ENOSPC)}


def filestore_class(settings: Settings) -> type:
    """ocs_archive's FileStore class for FILESTORE_TYPE."""
    from ocs_archive.storage.filestore import FileStoreSpecificationError
    from ocs_archive.storage.filestorefactory import FileStoreFactory

    try:
        return FileStoreFactory.get_file_store_class(settings.filestore_type)
    except FileStoreSpecificationError as exc:
        raise ConfigurationError(f"FILESTORE_TYPE: {exc}") from None


def uses_s3(settings: Settings) -> bool:
    from ocs_archive.storage.s3store import S3Store

    return issubclass(filestore_class(settings), S3Store)


def require_s3_filestore(settings: Settings) -> None:
    """The function copies landing objects S3 to S3; another file store there is a configuration error."""
    if not uses_s3(settings):
        raise ConfigurationError(
            f"FILESTORE_TYPE={settings.filestore_type} is for the Python API and `lambda-ingest ingest`; "
            "the function copies S3 to S3: unset it or set it to s3"
        )


class _OpenFile:
    """What ocs_archive's local and dummy stores read of a DataFile's `open_file`."""

    def __init__(self, fileobj: BinaryIO, extension: str, md5: str) -> None:
        self._fileobj, self.extension, self._md5 = fileobj, extension, md5

    def get_md5(self) -> str:
        return self._md5  # already streamed once by the engine; ocs_archive's would read the file into memory

    def get_from_start(self) -> BinaryIO:
        self._fileobj.seek(0)
        return self._fileobj


class _StoredFile:
    """The part of ocs_archive's DataFile those stores use, from the record already built from the header
    blocks (building a real DataFile would parse the whole file a second time)."""

    def __init__(self, open_file: _OpenFile, path: str) -> None:
        self.open_file, self._path = open_file, path

    def get_filestore_path(self) -> str:
        return self._path


def store_with_ocs_archive(settings: Settings, fileobj: BinaryIO, key: str, *, filename: str, md5: str) -> str:
    """Store through ocs_archive's FileStore for FILESTORE_TYPE (not s3); returns the version key."""
    from ocs_archive.storage.filestore import FileStoreConnectionError
    from ocs_archive.storage.filesystemstore import FileSystemStore

    from lambda_ingest.record import split_filename

    cls = filestore_class(settings)
    kwargs: dict[str, Any] = {}
    where = f"FILESTORE_TYPE={settings.filestore_type}"
    if issubclass(cls, FileSystemStore):
        root = settings.filesystem_storage_root_dir or ""
        _check_inside(root, key)
        kwargs["root_dir"] = root
        where += f": writing {os.path.join(root, key)}"
    _, extension = split_filename(filename)
    stored = _StoredFile(_OpenFile(fileobj, extension, md5), key)
    try:
        version = cls(**kwargs).store_file(stored)
    except FileStoreConnectionError as exc:
        raise StorageUnavailableError(f"{where}: {exc}") from exc
    except OSError as exc:
        raise translate_os_error(exc, where) from exc
    return str(version["key"])


def translate_os_error(exc: OSError, what: str) -> IngestError:
    """A local I/O error: retry later when it can clear by itself, else an operator must fix something."""
    detail = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in _TRANSIENT_ERRNOS:
        return StorageUnavailableError(f"{what}: {detail}")
    return StorageAccessError(f"{what}: {detail}")


def _check_inside(root: str, key: str) -> None:
    """The canonical path comes from header values (SITEID, INSTRUME, DAY-OBS): it must stay under the root."""
    base = os.path.abspath(root or os.curdir)
    target = os.path.abspath(os.path.join(base, key))  # lexical: a symlinked folder under the root is fine
    if os.path.isabs(key) or os.path.commonpath([base, target]) != base:
        raise RecordError(f"the canonical path {key!r} leads outside FILESYSTEM_STORAGE_ROOT_DIR")
