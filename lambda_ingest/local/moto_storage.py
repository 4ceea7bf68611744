"""moto's S3 objects held by reference, so a server-side copy costs the local S3 what it costs S3: no data.

moto keeps every object's bytes in a ``SpooledTemporaryFile`` (on disk above 5 MiB) and copies them
whole at every step: CopyObject reads the source and writes it again, and CompleteMultipartUpload joins
the parts twice and again for its full-object checksum. A 1 GB copy cost the local S3 ~8 s, so every copy
measured there was moto's time rather than the design's. Here each object holds immutable byte strings
by reference (:class:`SharedBuffer`): a copy shares them, a completed multipart upload is the list of its
parts, and a range read copies only the range. Objects live in memory; the local stack only ever holds a
few large frames at once.

Hand-written because moto has no storage hook; patched where ``install_aws_style_version_ids`` patches
moto already (``lambda_ingest.local.s3``), for the tests, the demo and the benchmark alike.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import tempfile
import threading
import types
from bisect import bisect_right
from typing import Any

__all__ = ["Segments", "SharedBuffer", "install_shared_storage"]

_lock = threading.Lock()


def _immutable(data: Any) -> bool:
    """bytes, or a read-only view of bytes: safe to hold by reference."""
    return type(data) is bytes or (isinstance(data, memoryview) and type(data.obj) is bytes)


class Segments:
    """Byte strings (or read-only views of them) that make one object's value, in order, not joined."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = [p for p in parts if p]

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


class SharedBuffer:
    """The file moto reads and writes an object's value through, holding byte strings by reference.

    moto only ever truncates it to nothing and writes the whole value, then seeks and reads; writes
    anywhere but at the end are therefore not supported.
    """

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self._parts: list[bytes] = []
        self._starts: list[int] = []
        self._size = 0
        self._pos = 0
        self.closed = False

    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")  # what moto expects of a disposed key

    def write(self, data: Any) -> int:
        self._check()
        if self._pos != self._size:
            raise NotImplementedError("SharedBuffer only appends")
        written = 0
        for part in data.parts if isinstance(data, Segments) else [data]:
            if not _immutable(part):
                part = bytes(part)
            if part:
                self._starts.append(self._size)
                self._parts.append(part)
                self._size += len(part)
                written += len(part)
        self._pos = self._size
        return written

    def view(self, start: int, end: int) -> Segments:
        """Bytes start..end-1 as views of the parts held, nothing copied (an UploadPartCopy's part)."""
        pieces = []
        i = bisect_right(self._starts, start) - 1
        while start < end and 0 <= i < len(self._parts):
            offset = start - self._starts[i]
            piece = memoryview(self._parts[i])[offset : offset + end - start]
            pieces.append(piece)
            start += len(piece)
            i += 1
        return Segments(pieces)

    def md5(self) -> str:
        """md5 of the whole value, hashed straight from the parts (hashlib releases the GIL on each)."""
        digest = hashlib.md5(usedforsecurity=False)
        for part in self._parts:
            digest.update(part)
        return digest.hexdigest()

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        start = min(self._pos, self._size)
        end = self._size if size is None or size < 0 else min(self._size, start + size)
        self._pos = max(start, end)
        return self._slice(start, end)

    def _slice(self, start: int, end: int) -> bytes:
        if start >= end:
            return b""
        i = bisect_right(self._starts, start) - 1
        part, offset = self._parts[i], start - self._starts[i]
        if offset == 0 and end - start == len(part) and type(part) is bytes:
            return part  # a whole part (a whole single-part object): shared, not copied
        if end - self._starts[i] <= len(part):
            return bytes(part[offset : offset + end - start])
        pieces = []
        while start < end:
            part, offset = self._parts[i], start - self._starts[i]
            piece = part[offset : offset + end - start]
            pieces.append(piece)
            start += len(piece)
            i += 1
        return b"".join(pieces)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._check()
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        self._check()
        size = self._pos if size is None else size
        if size < self._size:
            keep = bisect_right(self._starts, size - 1) if size > 0 else 0
            self._parts, self._starts = self._parts[:keep], self._starts[:keep]
            if keep:
                self._parts[-1] = self._parts[-1][: size - self._starts[-1]]
            self._size = size
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._parts, self._starts, self.closed = [], [], True


def _incremental_crc(algorithm: str) -> bool:
    """Whether moto's full-object checksum for `algorithm` is plain CRC32 here (then it runs part by part)."""
    from moto.s3 import utils

    if algorithm == "CRC32":
        return True
    if algorithm == "CRC64NVME":
        return not getattr(utils, "HAS_CRT", False)  # moto falls back to CRC32 without awscrt
    if algorithm == "CRC32C":
        try:
            import crc32c  # noqa: F401
        except ImportError:
            return True
    return False


def _complete(self: Any, body: Any) -> tuple[Any, str, tuple[str, str, int] | None]:
    """moto's FakeMultipart.complete, with the parts kept by reference rather than joined."""
    import base64

    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
    from moto.s3.models import S3_UPLOAD_PART_MIN_SIZE, MultipartChecksumBuilder
    from moto.utilities.utils import md5_hash

    builder = MultipartChecksumBuilder(
        self.metadata.get("x-amz-checksum-algorithm"), self.metadata.get("x-amz-checksum-type")
    )
    running_crc = builder.checksum_type != "COMPOSITE" and _incremental_crc(builder.checksum_algorithm)
    decode_hex = codecs.getdecoder("hex_codec")
    values: list[bytes] = []
    md5s = bytearray()
    crc = 0
    count = 0
    last = None
    for number, etag in body:
        part = self.parts.get(number)
        if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
            raise InvalidPart()
        if last is not None and last.contentsize < S3_UPLOAD_PART_MIN_SIZE:
            raise EntityTooSmall()
        md5s.extend(decode_hex(part.etag.replace('"', ""))[0])
        held = part._value_buffer._parts if isinstance(part._value_buffer, SharedBuffer) else [part.value]
        values.extend(held)
        if running_crc:
            for piece in held:
                crc = binascii.crc32(piece, crc)
        else:
            builder.addPart(b"".join(held))
        last = part
        count += 1
    if not count:
        raise MalformedXML
    if running_crc:
        checksum = (builder.checksum_type, base64.b64encode(crc.to_bytes(4, "big")).decode(), count)
    else:
        checksum = builder.build()
    return Segments(values), f"{md5_hash(bytes(md5s)).hexdigest()}-{count}", checksum


def _copy_keeps_etag(copy_object: Any) -> Any:
    def copy_object_sharing_etag(
        self: Any, src_key: Any, dest_bucket_name: str, dest_key_name: str, *a: Any, **k: Any
    ) -> Any:
        # The copy holds the source's very bytes: its md5 (a single-part ETag) is the source's, not
        # computed again over the whole object as moto would (1.4 s per GB here).
        result = copy_object(self, src_key, dest_bucket_name, dest_key_name, *a, **k)
        copied = self.get_bucket(dest_bucket_name).keys.get(dest_key_name)
        if copied is not None and src_key.multipart is None and src_key._etag and copied._etag is None:
            copied._etag = src_key._etag
        return result

    return copy_object_sharing_etag


def _etag_from_parts(etag: property) -> property:
    def shared_etag(self: Any) -> str:
        if self._etag is None and isinstance(self._value_buffer, SharedBuffer):
            self._etag = self._value_buffer.md5()  # moto reads 16 MB copies under the GIL to hash them
        return etag.fget(self)  # type: ignore[misc]

    return property(shared_etag)


def install_shared_storage() -> None:
    """Make moto's S3 hold object values by reference (idempotent, process-wide)."""
    import moto.s3.models as s3_models

    with _lock:
        if getattr(s3_models, "_lambda_ingest_shared_storage", False):
            return
        shim = types.SimpleNamespace(**{name: getattr(tempfile, name) for name in dir(tempfile) if name[0] != "_"})
        shim.SpooledTemporaryFile = SharedBuffer  # moto's only use of tempfile: each key's value buffer
        s3_models.tempfile = shim
        s3_models.FakeKey.etag = _etag_from_parts(s3_models.FakeKey.etag)  # type: ignore[method-assign]
        s3_models.FakeMultipart.complete = _complete  # type: ignore[method-assign]
        s3_models.S3Backend.copy_object = _copy_keeps_etag(s3_models.S3Backend.copy_object)  # type: ignore[method-assign]
        s3_models._lambda_ingest_shared_storage = True  # type: ignore[attr-defined]
