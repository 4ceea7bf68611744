"""S3 adapter: head, ranged get, md5 stream, server-side copy (multipart above the threshold), tag, delete.

Every botocore error is translated here into the project's error tree, so callers never see
ClientError: a missing object or version is ObjectGoneError, a changed one ObjectChangedError,
throttling/5xx/timeouts/any I/O error StorageUnavailableError, and a missing bucket, refused access,
expired or wrong credentials and KMS errors StorageAccessError (a fault of the system, never of a file).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, BinaryIO

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)

from lambda_ingest import clients
from lambda_ingest.errors import (
    ObjectChangedError,
    ObjectGoneError,
    StorageAccessError,
    StorageUnavailableError,
)
from lambda_ingest.settings import get_settings

PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
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
        if code == "NoSuchUpload":  # our multipart copy was aborted under us (a lifecycle rule): try again
            return StorageUnavailableError(f"{what}: S3 answered {code}")
        if code in _GONE or status == 404:
            return ObjectGoneError(f"{what}: no such object or version")
        if code in _CHANGED or status == 412:
            return ObjectChangedError(f"{what}: the object changed since the event (ETag no longer matches)")
        if code in _TRANSIENT or status >= 500 or status == 429:
            return StorageUnavailableError(f"{what}: S3 answered {code or status}")
        return StorageAccessError(f"{what}: S3 refused ({code or status}){': ' + message if message else ''}")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return StorageAccessError(f"{what}: no usable AWS credentials ({type(exc).__name__})")
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
    return _info(bucket, key, resp, int(resp["ContentLength"]))


def _info(bucket: str, key: str, resp: dict[str, Any], size: int) -> ObjectInfo:
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=size,
        etag=resp.get("ETag", "").strip('"'),
        version_id=resp.get("VersionId"),
        content_type=resp.get("ContentType"),
        metadata=dict(resp.get("Metadata") or {}),
        encryption=resp.get("ServerSideEncryption"),
        sse_customer=bool(resp.get("SSECustomerAlgorithm")),
    )


def open_landing(
    bucket: str, key: str, version_id: str | None, etag: str | None, length: int
) -> tuple[ObjectInfo, bytes]:
    """The object's first `length` bytes and all a HEAD would say of it, from one ranged GET.

    A ranged GET answers what HEAD does (the size in Content-Range, ETag, VersionId, metadata, encryption),
    so the header read's first block range replaces the HEAD: one request fewer per ingest. Pinned as the
    event names the object: its version, else its ETag (412: overwritten since the event). A zero-byte
    object has no byte 0 (S3 answers 416 InvalidRange): a HEAD, pinned the same way, then describes it.
    """
    event_etag = (etag or "").strip('"')
    pin = _version_args(version_id) or ({"IfMatch": f'"{event_etag}"'} if event_etag else {})
    what = f"GET s3://{bucket}/{key} bytes 0-{length - 1}"
    try:
        with _s3_errors(what):
            resp = clients.s3().get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{length - 1}", **pin)
            data = resp["Body"].read()
    except ObjectChangedError:
        raise _overwritten(event_etag, None) from None
    except StorageAccessError as exc:
        if not _invalid_range(exc.__cause__):
            raise
        obj = head(bucket, key, version_id)
        if event_etag and "VersionId" not in pin and obj.etag != event_etag:
            raise _overwritten(event_etag, obj.etag) from None
        return obj, b""
    total = str(resp.get("ContentRange") or "").rpartition("/")[2]
    return _info(bucket, key, resp, int(total) if total.isdigit() else int(resp["ContentLength"])), data


def _invalid_range(exc: BaseException | None) -> bool:
    if not isinstance(exc, ClientError):
        return False
    code = exc.response.get("Error", {}).get("Code")
    return code == "InvalidRange" or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416


def _overwritten(event_etag: str, now: str | None) -> ObjectChangedError:
    return ObjectChangedError(
        f"the landing object was overwritten after the event (event ETag {event_etag}"
        f"{', now ' + now if now else ''}); the newer upload is ingested through its own event"
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


# The md5 stream keeps this many byte ranges in flight, one connection each. One S3 connection delivers
# roughly 85-90 MB/s (AWS's performance guidelines) after a first-byte latency of tens of milliseconds: a
# 2 MiB range takes ~45 ms, ~48 MB/s, so 16 of them (~780 MB/s) stay ahead of md5 itself (~650-750 MB/s on
# one core); 14 (~680 MB/s) left md5 waiting. Memory is this many chunks (MD5_CHUNK_SIZE each) plus one,
# whatever the object's size. Smaller ranges cost more requests (~0.3 ms of client CPU each, presigned),
# larger ones more memory. See docs/benchmarks.md.
MD5_CONNECTIONS = 16
MD5_CHUNK_SIZE = 2 * 1024**2  # one range of the md5 stream
# A range that fails (connection reset, truncated body, throttling, 5xx) is fetched again, alone, this many
# times in all, with a short growing pause; the other ranges carry on meanwhile.
RANGE_ATTEMPTS = 4
RANGE_RETRY_PAUSE = 0.05  # seconds, doubled at each attempt


# A presigned URL signs the stream's GET once; every range is then a plain HTTP GET on a kept-alive
# connection. botocore spends ~2.5 ms of CPU per request here (endpoint rules, serialising, signing,
# parsing): at 512 ranges per GB that was as much CPU as md5 itself. Valid this long (seconds), or until
# the function's own credentials expire, whichever is first; a stream takes seconds.
RANGE_URL_SECONDS = 900
_S3_ERROR = re.compile(rb"<Code>([^<]*)</Code>(?:.*?<Message>([^<]*)</Message>)?", re.S)


def range_url(obj: ObjectInfo) -> str:
    """A presigned GET of exactly `obj` (its version, when it has one) for the md5 stream's ranges."""
    params = {"Bucket": obj.bucket, "Key": obj.key, **_version_args(obj.version_id)}
    with _s3_errors(f"presign GET {obj.uri}"):
        return str(clients.s3().generate_presigned_url("get_object", Params=params, ExpiresIn=RANGE_URL_SECONDS))


def _refused(status: int, body: bytes, what: str) -> Exception:
    """S3's error answer to a presigned GET, translated as botocore's would be."""
    found = _S3_ERROR.search(body or b"")
    code = found.group(1).decode(errors="replace") if found else str(status)
    message = (found.group(2) or b"").decode(errors="replace") if found else ""
    error = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return translate(ClientError(error, "GetObject"), what)  # type: ignore[arg-type]


def fetch_range(obj: ObjectInfo, offset: int, buffer: memoryview, url: str | None = None) -> None:
    """Fill `buffer` with the object's bytes from `offset`: one ranged GET of the presigned `url` (made
    here when not given), read straight into the buffer, pinned to the object's version or ETag."""
    length = len(buffer)
    what = f"GET {obj.uri} bytes {offset}-{offset + length - 1}"
    headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
    if if_match := _pin(obj).get("IfMatch"):  # a version is pinned in the URL itself (range_url)
        headers["If-Match"] = if_match
    url = url or range_url(obj)
    stubbed = _answered_in_process(url, headers)
    if stubbed is not None:
        filled = _fill_from(stubbed.status_code, stubbed.headers, stubbed.content, offset, buffer, what)
    else:
        filled = _fetch_over_http(url, headers, offset, buffer, what)
    if filled != length:  # a body cut short: S3 closed the connection early
        raise StorageUnavailableError(f"{what}: short read ({filled} bytes)")


def _answered_in_process(url: str, headers: dict[str, str]) -> Any:
    """The answer of whatever answers S3 inside this process (moto's mock_aws, through botocore's
    before-send event, as it does for every botocore request), else None: the GET goes over HTTP."""
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="GET", url=url, headers=headers).prepare()
    for _, response in clients.s3().meta.events.emit("before-send.s3.GetObject", request=request):
        if response is not None:
            return response
    return None


def _check_range(status: int, headers: Any, offset: int, body: Any, what: str) -> None:
    if status != 206 or not str(headers.get("Content-Range", "")).startswith(f"bytes {offset}-"):
        raise _refused(status, body() if callable(body) else body, what)


def _fill_from(status: int, headers: Any, content: bytes, offset: int, buffer: memoryview, what: str) -> int:
    _check_range(status, headers, offset, content, what)
    filled = min(len(content), len(buffer))
    buffer[:filled] = content[:filled]
    return filled


def _fetch_over_http(url: str, headers: dict[str, str], offset: int, buffer: memoryview, what: str) -> int:
    import urllib3

    length, filled = len(buffer), 0
    try:
        resp = clients.http_pool().request("GET", url, headers=headers, preload_content=False, decode_content=False)
        clean = False
        try:
            _check_range(resp.status, resp.headers, offset, resp.read, what)
            # Straight from the socket into the buffer (http.client's readinto): urllib3's own readinto
            # reads into a new bytes and copies it, twice the memory traffic of the range for nothing.
            # The bytes are the stored ones (decode_content=False: a Content-Encoding is never undone).
            readinto = getattr(getattr(resp, "_fp", None), "readinto", None) or resp.readinto
            while filled < length and (n := readinto(buffer[filled:])):
                filled += n
            clean = filled == length
        finally:
            # A body read to its end leaves its connection reusable (kept alive); any other is closed.
            if clean:
                resp.release_conn()
            else:
                resp.close()
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # timeouts, resets, truncated bodies
        raise StorageUnavailableError(f"{what}: {type(exc).__name__}") from exc
    return filled


def _fetch_range_retried(obj: ObjectInfo, offset: int, buffer: memoryview, url: str) -> None:
    """One range of the md5 stream, fetched again on a transient failure (a changed/gone object is final)."""
    for attempt in range(1, RANGE_ATTEMPTS + 1):
        try:
            fetch_range(obj, offset, buffer, url)
            return
        except StorageUnavailableError:
            if attempt == RANGE_ATTEMPTS:
                raise
            time.sleep(RANGE_RETRY_PAUSE * 2 ** (attempt - 1))


def stream_md5(obj: ObjectInfo, connections: int | None = None) -> str:
    """md5 of the whole object, fetched as byte ranges on several connections at once, hashed in order.

    One GET stream is capped by S3's per-connection throughput, far below md5's own speed; ranges on
    `connections` connections (default MD5_CONNECTIONS) in parallel are not. Ranges are fed to the one md5
    strictly in order. Each range is read straight into one of connections + 1 buffers of one chunk, reused
    from range to range (one is being hashed while the others fill), so memory is bounded by
    (connections + 1) x chunk whatever the object's size, with no allocation per range. hashlib releases the
    GIL on large buffers, so hashing overlaps the fetches. Every range is pinned to the event's version or
    ETag; one that fails is retried alone.

    Hand-written rather than boto3's managed download (which also fetches ranges in parallel): that one
    writes ranges to a seekable file as they arrive, out of order, so hashing in order would need the whole
    object on disk or in memory.
    """
    chunk = MD5_CHUNK_SIZE
    connections = max(1, connections or MD5_CONNECTIONS)
    digest = hashlib.md5(usedforsecurity=False)
    ranges = iter([(offset, min(chunk, obj.size - offset)) for offset in range(0, obj.size, chunk)])
    free: list[bytearray] = []  # buffers hashed and ready for another range
    url = range_url(obj)
    pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="md5-range")

    def submit(offset: int, length: int) -> tuple[Future[None], memoryview]:
        view = memoryview(free.pop() if free else bytearray(chunk))[:length]
        return pool.submit(_fetch_range_retried, obj, offset, view, url), view

    try:
        pending = deque(submit(*r) for r in islice(ranges, connections))
        while pending:
            future, view = pending.popleft()
            future.result()
            if (following := next(ranges, None)) is not None:
                pending.append(submit(*following))
            digest.update(view)
            free.append(view.obj)  # type: ignore[arg-type]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a failure stops the fetches not yet started
    return digest.hexdigest()


def _object_attributes(content_type: str, content_disposition: str, metadata: dict[str, str] | None) -> dict[str, Any]:
    return {"ContentType": content_type, "ContentDisposition": content_disposition, "Metadata": dict(metadata or {})}


# S3's multipart limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html).
MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
MAX_PARTS = 10_000
MAX_COPY_OBJECT_SIZE = 5 * 1024**3  # CopyObject's own limit: larger objects must be copied in parts
MAX_PUT_OBJECT_SIZE = 5 * 1024**3  # PutObject's: larger uploads must be made in parts
# Not settings (tests override them in code). Measured under the benchmark's S3 model (docs/benchmarks.md):
# parallel parts pay from ~16 MiB; parts are at least this, raised by part_size() to fit.
COPY_MULTIPART_THRESHOLD = 16 * 1024**2
COPY_PART_SIZE = MIN_PART_SIZE


def part_size(size: int, configured: int, concurrency: int | None = None) -> int:
    """The part size for `size` bytes: at least the configured size, raised so the parts fit in S3's 10,000
    and in one round of `concurrency` parallel requests, within S3's 5 MiB..5 GiB.

    One round: every part copies at the same per-request rate on S3's side, so the copy lasts about one
    part's time; more, smaller parts would only add requests (each billed) and rounds.
    """
    wanted = max(configured, math.ceil(size / MAX_PARTS), math.ceil(size / concurrency) if concurrency else 0)
    return min(MAX_PART_SIZE, max(MIN_PART_SIZE, wanted))


def copy_in_parts(size: int, threshold: int) -> bool:
    """Whether a copy of `size` bytes is made of parallel UploadPartCopy requests rather than one CopyObject.

    S3 copies one request at a time at a bounded rate, so a large object copies several times faster as
    parts copied in parallel; below the threshold the extra requests (create, complete) cost more than the
    parallelism saves. CopyObject cannot copy more than 5 GiB at all.
    """
    return size > min(threshold, MAX_COPY_OBJECT_SIZE)


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
    """Server-side copy of exactly `obj` (its version/ETag) to the archive; returns the new VersionId.

    The archive copy carries its own attributes and no tags: the landing object's tags (e.g. a rejection's)
    never leak into the archive, whichever copy path is taken.
    """
    source: dict[str, str] = {"Bucket": obj.bucket, "Key": obj.key, **_version_args(obj.version_id)}
    extra = _object_attributes(content_type, content_disposition, metadata)
    what = f"copy {obj.uri} -> s3://{dest_bucket}/{dest_key}"
    if not copy_in_parts(obj.size, COPY_MULTIPART_THRESHOLD):
        with _s3_errors(what):
            resp = clients.s3().copy_object(
                Bucket=dest_bucket,
                Key=dest_key,
                CopySource=source,
                CopySourceIfMatch=f'"{obj.etag}"',
                MetadataDirective="REPLACE",
                TaggingDirective="REPLACE",  # with no Tagging given: the copy has none
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
    # A multipart upload starts with no tags, as CopyObject with TaggingDirective=REPLACE does.
    settings = get_settings()
    s3 = clients.s3()
    size = part_size(obj.size, COPY_PART_SIZE, settings.copy_concurrency)
    ranges = [(i, min(i + size, obj.size) - 1) for i in range(0, obj.size, size)]
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

    pool = ThreadPoolExecutor(max_workers=settings.copy_concurrency, thread_name_prefix="copy-part")
    try:
        try:
            futures = [pool.submit(copy_part, n + 1, a, b) for n, (a, b) in enumerate(ranges)]
            parts = [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # one failed part: the parts not started never run
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
    # One PUT whenever S3 allows it: the parts of a local file are sent one after another, so unlike a
    # server-side copy, splitting it would only add requests.
    if size <= MAX_PUT_OBJECT_SIZE:
        with _s3_errors(what):
            resp = s3.put_object(Bucket=dest_bucket, Key=dest_key, Body=body, **extra)
    else:
        # Hand-written for the same reason as _multipart_copy: upload_fileobj() hides the VersionId.
        chunk = part_size(size, COPY_PART_SIZE)
        with _s3_errors(what):
            upload_id = s3.create_multipart_upload(Bucket=dest_bucket, Key=dest_key, **extra)["UploadId"]
        try:
            parts = []
            for number, data in enumerate(iter(lambda: body.read(chunk), b""), 1):
                with _s3_errors(f"{what} part {number}"):
                    etag = s3.upload_part(
                        Bucket=dest_bucket, Key=dest_key, UploadId=upload_id, PartNumber=number, Body=data
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


def list_versions(bucket: str, key: str) -> list[str]:
    """The version ids of exactly `key` (not of keys it prefixes), newest first as S3 lists them."""
    found: list[str] = []
    paginator = clients.s3().get_paginator("list_object_versions")
    with _s3_errors(f"list versions s3://{bucket}/{key}"):
        for page in paginator.paginate(Bucket=bucket, Prefix=key):
            found += [v["VersionId"] for v in page.get("Versions", []) if v.get("Key") == key and v.get("VersionId")]
    return found


def unregistered_versions_with_md5(
    bucket: str, key: str, md5: str, keep: set[str], versions: list[str] | None = None
) -> list[str]:
    """Versions of `key` (those listed in `versions` when given) not in `keep` whose copy metadata says
    they hold these bytes."""
    found = []
    for version_id in list_versions(bucket, key) if versions is None else versions:
        if version_id in keep:
            continue
        with _s3_errors(f"HEAD s3://{bucket}/{key}?versionId={version_id}"):
            meta = clients.s3().head_object(Bucket=bucket, Key=key, VersionId=version_id).get("Metadata", {})
        if meta.get("md5") == md5:
            found.append(version_id)
    return found


def versions_older_than(bucket: str, key: str, version_id: str) -> list[str]:
    """The versions of exactly `key` listed after `version_id` (S3 lists a key's versions newest first)."""
    versions = list_versions(bucket, key)
    return versions[versions.index(version_id) + 1 :] if version_id in versions else []


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
