"""Where the bytes being ingested come from: a landing object in S3, or a local file object.

The engine needs the same things from both: ranged reads of the header blocks, one stream for an md5 when
none is known, a way into the archive's file store that returns the new version key, a way to take back a
copy whose registration failed, and removal once registered.

A landing object is always copied S3 to S3. A local file goes where FILESTORE_TYPE says (`filestore.py`:
the archive bucket, ocs_archive's local file store or its dummy store), as with ocs_ingester.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO, Protocol

from lambda_ingest import filestore, store
from lambda_ingest.settings import get_settings


class Source(Protocol):
    name: str
    filename: str
    size: int
    metadata: dict[str, str]

    def read_range(self, offset: int, length: int) -> bytes: ...

    def stream(self) -> AbstractContextManager[BinaryIO]: ...

    def known_md5(self) -> str | None: ...

    def md5(self) -> str: ...

    def put_into_archive(self, bucket: str, key: str, **attrs: object) -> str: ...

    def discard_from_archive(self, bucket: str, key: str, version_id: str) -> None: ...

    def archive_versions(self, bucket: str, key: str) -> list[str]: ...

    def unregistered_archive_copies(
        self, bucket: str, key: str, md5: str, keep: set[str], versions: list[str] | None = None
    ) -> list[str]: ...

    def remove(self) -> None: ...


class LandingObject:
    """A landing-bucket object, pinned to the version/ETag first read; copied server-side.

    `prefix`: its first bytes, already read (by `open`): ranges inside them are served without a request.
    """

    def __init__(self, obj: store.ObjectInfo, prefix: bytes = b"") -> None:
        self.obj = obj
        self.name = obj.uri
        self.filename = obj.key.rsplit("/", 1)[-1]
        self.size = obj.size
        self.metadata = obj.metadata
        self.prefix = prefix

    @classmethod
    def open(cls, bucket: str, key: str, version_id: str | None, etag: str | None, first_read: int) -> LandingObject:
        """The object as the event names it (version, else ETag), described by the ranged GET of its first
        `first_read` bytes (the header read's first block range): no separate HEAD."""
        return cls(*store.open_landing(bucket, key, version_id, etag, first_read))

    def read_range(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if end <= len(self.prefix):
            return self.prefix[offset:end]
        return store.read_range(self.obj, offset, length)

    @contextmanager
    def stream(self) -> Iterator[BinaryIO]:
        if len(self.prefix) >= self.size:  # a small object (a .tar.gz bundle): read whole already
            yield io.BytesIO(self.prefix)
            return
        with store.open_stream(self.obj) as body:
            yield body

    def known_md5(self) -> str | None:
        return self.obj.etag_md5

    def md5(self) -> str:
        return store.stream_md5(self.obj)

    def put_into_archive(self, bucket: str, key: str, **attrs: object) -> str:
        return store.copy_to_archive(self.obj, bucket, key, **attrs)  # type: ignore[arg-type]

    def discard_from_archive(self, bucket: str, key: str, version_id: str) -> None:
        store.delete_version(bucket, key, version_id)

    def archive_versions(self, bucket: str, key: str) -> list[str]:
        return store.list_versions(bucket, key)

    def unregistered_archive_copies(
        self, bucket: str, key: str, md5: str, keep: set[str], versions: list[str] | None = None
    ) -> list[str]:
        return store.unregistered_versions_with_md5(bucket, key, md5, keep, versions)

    def remove(self) -> None:
        store.delete_landing(self.obj)


class LocalFile:
    """A local file object (the command line and ocs_ingester's API); uploaded, never deleted."""

    def __init__(self, fileobj: BinaryIO, path: str | None = None, metadata: dict[str, str] | None = None) -> None:
        self.fileobj = fileobj
        name = path or getattr(fileobj, "name", None) or getattr(fileobj, "filename", None)
        if not name:
            from lambda_ingest.errors import RecordError

            raise RecordError("the file object has no name: pass path= so basename and extension are known")
        self.name = str(name)
        self.filename = os.path.basename(self.name)
        fileobj.seek(0, os.SEEK_END)
        self.size = fileobj.tell()
        fileobj.seek(0)
        self.metadata = dict(metadata or {})
        self._lock = threading.Lock()

    def read_range(self, offset: int, length: int) -> bytes:
        with self._lock:
            self.fileobj.seek(offset)
            return self.fileobj.read(length)

    @contextmanager
    def stream(self) -> Iterator[BinaryIO]:
        with self._lock:
            self.fileobj.seek(0)
            yield self.fileobj

    def known_md5(self) -> str | None:
        return None

    def md5(self) -> str:
        chunk = store.MD5_CHUNK_SIZE
        digest = hashlib.md5(usedforsecurity=False)
        with self.stream() as body:
            for part in iter(lambda: body.read(chunk), b""):
                digest.update(part)
        return digest.hexdigest()

    def put_into_archive(self, bucket: str, key: str, **attrs: object) -> str:
        if self._s3:
            with self.stream() as body:
                return store.upload_to_archive(body, self.size, bucket, key, **attrs)  # type: ignore[arg-type]
        metadata: dict[str, str] = attrs.get("metadata") or {}  # type: ignore[assignment]
        md5 = metadata.get("md5") or self.md5()
        with self.stream() as body:
            return filestore.store_with_ocs_archive(get_settings(), body, key, filename=self.filename, md5=md5)

    def discard_from_archive(self, bucket: str, key: str, version_id: str) -> None:
        # ocs_archive's local store keeps no versions: the file just written replaced the one at that path,
        # which may be a registered older file of the same name. Deleting it could lose registered bytes,
        # so a failed registration leaves it in place (as ocs_ingester does); the next attempt rewrites it.
        if self._s3:
            store.delete_version(bucket, key, version_id)

    def archive_versions(self, bucket: str, key: str) -> list[str]:
        return store.list_versions(bucket, key) if self._s3 else []  # ocs_archive's local store keeps none

    def unregistered_archive_copies(
        self, bucket: str, key: str, md5: str, keep: set[str], versions: list[str] | None = None
    ) -> list[str]:
        return store.unregistered_versions_with_md5(bucket, key, md5, keep, versions) if self._s3 else []

    @property
    def _s3(self) -> bool:
        return filestore.uses_s3(get_settings())

    def remove(self) -> None:
        """Local files are the user's: never deleted (as ocs_ingester)."""
