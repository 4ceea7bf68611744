"""S3 adapter: head, ranged get, md5 stream, server-side copy (multipart above the threshold), tag, delete.

Every botocore error is translated here into the project's error tree, so callers never see
ClientError: a missing object or version is ObjectGoneError, a changed one ObjectChangedError,
throttling/5xx/timeouts/any I/O error StorageUnavailableError, and a missing bucket, refused access,
expired or wrong credentials and KMS errors StorageAccessError (a fault of the system, never of a file).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from lambda_ingest import clients
from lambda_ingest.errors import (
    ObjectChangedError,
    ObjectGoneError,
    StorageAccessError,
    StorageUnavailableError,
)
from lambda_ingest.settings import get_settings

PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
MIB = 1024**2
# Not settings (no operator has a reason to change them; tests override them in code).
# Above this size a copy is a parallel multipart copy (CopyObject's own limit is 5 GiB).
COPY_MULTIPART_THRESHOLD = 5 * 1024 * MIB
COPY_PART_SIZE = 512 * MIB
MD5_CHUNK_SIZE = 8 * MIB  # read size when an md5 must be streamed (multipart/KMS objects)

_GONE = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
# The deployment's fault: a bucket that does not exist, permissions, credentials, encryption keys.
_ACCESS = {
    "NoSuchBucket",
    "AccessDenied",
    "403",
    "Forbidden",
    "AllAccessDisabled",
    "AccountProblem",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "InvalidObjectState",  # archived (Glacier) landing object: needs a restore by an operator
}
_CHANGED = {"PreconditionFailed", "412"}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
}


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None
    content_type: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    encryption: str | None = None
    sse_customer: bool = False

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def etag_md5(self) -> str | None:
        """The ETag when it is the md5 of the bytes: single-part upload, not SSE-KMS/SSE-C."""
        if self.encryption == "aws:kms" or self.encryption == "aws:kms:dsse" or self.sse_customer:
            return None
        return self.etag if PLAIN_MD5.match(self.etag) else None


def translate(exc: Exception, what: str) -> Exception:
    """Map a botocore error to the project's error tree."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = " ".join(str(error.get("Message") or "").split())
        if code in _ACCESS or code.startswith("KMS") or status == 403:
            return StorageAccessError(f"{what}: S3 refused ({code or status}){': ' + message if message else ''}")
        if code in _GONE or status == 404:
            return ObjectGoneError(f"{what}: no such object or version")
        if code in _CHANGED or status == 412:
            return ObjectChangedError(f"{what}: the object changed since the event (ETag no longer matches)")
        if code in _TRANSIENT or status >= 500 or status == 429:
            return StorageUnavailableError(f"{what}: S3 answered {code or status}")
        return StorageAccessError(f"{what}: S3 refused ({code or status}){': ' + message if message else ''}")
    if isinstance(exc, (BotoCoreError, OSError)):  # timeouts, connection errors, incomplete reads
        return StorageUnavailableError(f"{what}: {type(exc).__name__}")
    return exc


@contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError, OSError) as exc:  # a read error of the body is an OSError too
        raise translate(exc, what) from exc


def _version_args(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id and version_id != "null" else {}


def head(bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
    with _s3_errors(f"HEAD s3://{bucket}/{key}"):
        resp = clients.s3().head_object(Bucket=bucket, Key=key, **_version_args(version_id))
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=int(resp["ContentLength"]),
        etag=resp.get("ETag", "").strip('"'),
        version_id=resp.get("VersionId"),
        content_type=resp.get("ContentType"),
        metadata=dict(resp.get("Metadata") or {}),
        encryption=resp.get("ServerSideEncryption"),
        sse_customer=bool(resp.get("SSECustomerAlgorithm")),
    )


def _pin(obj: ObjectInfo) -> dict[str, str]:
    """Pin reads to the exact bytes named by the event: the version if any, else the ETag."""
    if obj.version_id and obj.version_id != "null":
        return {"VersionId": obj.version_id}
    return {"IfMatch": f'"{obj.etag}"'}


def read_range(obj: ObjectInfo, offset: int, length: int) -> bytes:
    if length <= 0:
        return b""
    with _s3_errors(f"GET {obj.uri} bytes {offset}-{offset + length - 1}"):
        resp = clients.s3().get_object(
            Bucket=obj.bucket, Key=obj.key, Range=f"bytes={offset}-{offset + length - 1}", **_pin(obj)
        )
        return resp["Body"].read()


@contextmanager
def open_stream(obj: ObjectInfo) -> Iterator[BinaryIO]:
    """The object's body as a stream (closed on exit, so an early stop reads no more)."""
    with _s3_errors(f"GET {obj.uri}"):
        resp = clients.s3().get_object(Bucket=obj.bucket, Key=obj.key, **_pin(obj))
    body = resp["Body"]
    try:
        with _s3_errors(f"GET {obj.uri}"):
            yield body
    finally:
        body.close()


def stream_md5(obj: ObjectInfo) -> str:
    """md5 of the whole object, read once in fixed-size chunks (memory independent of size: two chunks).

    Reading and hashing overlap: one thread fetches the next chunk while this one hashes the last (hashlib
    releases the GIL on large buffers), so the stream runs at the slower of the two, not their sum.
    """
    digest = hashlib.md5(usedforsecurity=False)
    chunk = MD5_CHUNK_SIZE
    with open_stream(obj) as body, ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(body.read, chunk)
        while part := pending.result():
            pending = reader.submit(body.read, chunk)
            digest.update(part)
    return digest.hexdigest()


def _object_attributes(content_type: str, content_disposition: str, metadata: dict[str, str] | None) -> dict[str, Any]:
    return {"ContentType": content_type, "ContentDisposition": content_disposition, "Metadata": dict(metadata or {})}


def copy_to_archive(
    obj: ObjectInfo,
    dest_bucket: str,
    dest_key: str,
    *,
    content_type: str,
    content_disposition: str,
    storage_class: str,
    metadata: dict[str, str] | None = None,
) -> str:
    """Server-side copy of exactly `obj` (its version/ETag) to the archive; returns the new VersionId."""
    source: dict[str, str] = {"Bucket": obj.bucket, "Key": obj.key, **_version_args(obj.version_id)}
    extra = _object_attributes(content_type, content_disposition, metadata)
    what = f"copy {obj.uri} -> s3://{dest_bucket}/{dest_key}"
    if obj.size <= COPY_MULTIPART_THRESHOLD:
        with _s3_errors(what):
            resp = clients.s3().copy_object(
                Bucket=dest_bucket,
                Key=dest_key,
                CopySource=source,
                CopySourceIfMatch=f'"{obj.etag}"',
                MetadataDirective="REPLACE",
                StorageClass=storage_class,
                **extra,
            )
    else:
        resp = _multipart_copy(obj, source, dest_bucket, dest_key, storage_class, extra, what)
    version_id = resp.get("VersionId")
    if not version_id:
        raise StorageAccessError(f"{what}: the archive bucket returned no VersionId (is versioning enabled?)")
    return str(version_id)


def _multipart_copy(
    obj: ObjectInfo,
    source: dict[str, str],
    dest_bucket: str,
    dest_key: str,
    storage_class: str,
    extra: dict[str, Any],
    what: str,
) -> dict[str, Any]:
    # Hand-written rather than boto3's managed copy(): that one discards CompleteMultipartUpload's
    # VersionId, which is the archive's version key; reading it back later could race another writer.
    settings = get_settings()
    s3 = clients.s3()
    part_size = COPY_PART_SIZE
    ranges = [(i, min(i + part_size, obj.size) - 1) for i in range(0, obj.size, part_size)]
    with _s3_errors(what):
        upload_id = s3.create_multipart_upload(Bucket=dest_bucket, Key=dest_key, StorageClass=storage_class, **extra)[
            "UploadId"
        ]

    def copy_part(number: int, first: int, last: int) -> dict[str, Any]:
        with _s3_errors(f"{what} part {number}"):
            part = s3.upload_part_copy(
                Bucket=dest_bucket,
                Key=dest_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=source,
                CopySourceIfMatch=f'"{obj.etag}"',
                CopySourceRange=f"bytes={first}-{last}",
            )
        return {"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]}

    try:
        with ThreadPoolExecutor(max_workers=settings.copy_concurrency) as pool:
            parts = list(pool.map(lambda args: copy_part(*args), [(n + 1, a, b) for n, (a, b) in enumerate(ranges)]))
        with _s3_errors(what):
            return s3.complete_multipart_upload(
                Bucket=dest_bucket, Key=dest_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
    except BaseException:
        # No half-finished upload left behind (and no storage billed for its parts).
        with suppress(ClientError, BotoCoreError):
            s3.abort_multipart_upload(Bucket=dest_bucket, Key=dest_key, UploadId=upload_id)
        raise


def upload_to_archive(
    body: BinaryIO,
    size: int,
    dest_bucket: str,
    dest_key: str,
    *,
    content_type: str,
    content_disposition: str,
    storage_class: str,
    metadata: dict[str, str] | None = None,
) -> str:
    """Upload a local file object to the archive bucket; returns the new VersionId."""
    s3 = clients.s3()
    extra = {**_object_attributes(content_type, content_disposition, metadata), "StorageClass": storage_class}
    what = f"upload to s3://{dest_bucket}/{dest_key}"
    if size <= COPY_MULTIPART_THRESHOLD:
        with _s3_errors(what):
            resp = s3.put_object(Bucket=dest_bucket, Key=dest_key, Body=body, **extra)
    else:
        # Hand-written for the same reason as _multipart_copy: upload_fileobj() hides the VersionId.
        with _s3_errors(what):
            upload_id = s3.create_multipart_upload(Bucket=dest_bucket, Key=dest_key, **extra)["UploadId"]
        try:
            parts = []
            for number, chunk in enumerate(iter(lambda: body.read(COPY_PART_SIZE), b""), 1):
                with _s3_errors(f"{what} part {number}"):
                    etag = s3.upload_part(
                        Bucket=dest_bucket, Key=dest_key, UploadId=upload_id, PartNumber=number, Body=chunk
                    )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
            with _s3_errors(what):
                resp = s3.complete_multipart_upload(
                    Bucket=dest_bucket, Key=dest_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            with suppress(ClientError, BotoCoreError):
                s3.abort_multipart_upload(Bucket=dest_bucket, Key=dest_key, UploadId=upload_id)
            raise
    version_id = resp.get("VersionId")
    if not version_id:
        raise StorageAccessError(f"{what}: the archive bucket returned no VersionId (is versioning enabled?)")
    return str(version_id)


def delete_version(bucket: str, key: str, version_id: str) -> None:
    """Delete one object version (the archive copy this attempt created); permanent, no delete marker."""
    with _s3_errors(f"delete s3://{bucket}/{key}?versionId={version_id}"):
        clients.s3().delete_object(Bucket=bucket, Key=key, VersionId=version_id)


def unregistered_versions_with_md5(bucket: str, key: str, md5: str, keep: set[str]) -> list[str]:
    """Versions of `key` not in `keep` whose copy metadata says they hold these bytes."""
    found = []
    paginator = clients.s3().get_paginator("list_object_versions")
    with _s3_errors(f"list versions s3://{bucket}/{key}"):
        for page in paginator.paginate(Bucket=bucket, Prefix=key):
            for version in page.get("Versions", []):
                version_id = version.get("VersionId")
                if version.get("Key") != key or not version_id or version_id in keep:
                    continue
                meta = clients.s3().head_object(Bucket=bucket, Key=key, VersionId=version_id).get("Metadata", {})
                if meta.get("md5") == md5:
                    found.append(version_id)
    return found


def versions_older_than(bucket: str, key: str, version_id: str) -> list[str]:
    """The versions of exactly `key` listed after `version_id` (S3 lists a key's versions newest first)."""
    older: list[str] = []
    seen = False
    paginator = clients.s3().get_paginator("list_object_versions")
    with _s3_errors(f"list versions s3://{bucket}/{key}"):
        for page in paginator.paginate(Bucket=bucket, Prefix=key):
            for version in page.get("Versions", []):
                if version.get("Key") != key:
                    continue
                if seen:
                    older.append(version["VersionId"])
                seen = seen or version.get("VersionId") == version_id
    return older


def delete_landing(obj: ObjectInfo) -> None:
    """Remove the landing object that was ingested: its version when the bucket is versioned, else only
    while it still holds the bytes ingested (a conditional delete on the ETag), so an upload that replaced
    it meanwhile is never removed unseen. Raises ObjectChangedError when it was replaced."""
    pin = _version_args(obj.version_id) or {"IfMatch": f'"{obj.etag}"'}
    with _s3_errors(f"delete {obj.uri}"):
        clients.s3().delete_object(Bucket=obj.bucket, Key=obj.key, **pin)


def tag(obj: ObjectInfo, tags: dict[str, str]) -> None:
    """Replace the object's tags (S3 limits: 128-char keys, 256-char values)."""
    tag_set = [{"Key": k[:128], "Value": tag_value(v)} for k, v in tags.items()]
    with _s3_errors(f"tag {obj.uri}"):
        clients.s3().put_object_tagging(
            Bucket=obj.bucket, Key=obj.key, Tagging={"TagSet": tag_set}, **_version_args(obj.version_id)
        )


def get_tags(bucket: str, key: str) -> dict[str, str]:
    with _s3_errors(f"get tags s3://{bucket}/{key}"):
        resp = clients.s3().get_object_tagging(Bucket=bucket, Key=key)
    return {t["Key"]: t["Value"] for t in resp.get("TagSet", [])}


_TAG_CHARS = re.compile(r"[^\w .:/=+\-@]")


def tag_value(value: str) -> str:
    """`value` as S3 allows a tag value (letters, digits, spaces and _ . : / = + - @; 256 characters):
    other characters become spaces and runs of spaces one, so the reason stays plain words."""
    return " ".join(_TAG_CHARS.sub(" ", value).split())[:256].strip()
