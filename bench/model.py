"""A realistic S3 in front of the local one: per-connection throughput, first-byte latency, copy time.

moto on loopback answers in microseconds and streams at memory speed; S3 does neither. `S3Model` wraps
moto's WSGI application (`LocalS3Server(middleware=...)`) so that every S3 request

- waits `first_byte_s` before its response starts (request latency, paid by every request);
- sends its response body, and receives its request body, at most at `connection_rate` bytes/s (one
  request at a time per HTTP connection, so this is the per-connection cap). The body leaves in slices of
  `SEND_SLICE`, each once the rate allows all of it: every pacing step is a sleep and a thread switch in the
  server, which shares the machine's two cores with the client it serves, so the steps are coarse;
- for CopyObject and UploadPartCopy, which S3 performs on its side, lasts at least
  `first_byte_s + copied bytes / copy_rate`: each copy request copies at a bounded rate, parts of a
  multipart copy in parallel each at that rate.

Whatever moto itself spends counts towards these times (the model only waits for what is left), so the
model never makes a request faster than moto serves it. Only S3 is shaped; DynamoDB and SQS calls (JSON
protocol, `X-Amz-Target`) pass through. Figures and sources: `FIGURES` (cited in docs/benchmarks.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
SEND_SLICE = 2 * 1024 * 1024  # one md5 range per step; 256 KiB steps cost the server ~0.3 s of CPU per GB


@dataclass(frozen=True)
class S3Model:
    first_byte_s: float = 0.020
    connection_rate: float = 90e6  # bytes/s
    copy_rate: float = 60e6  # bytes/s per copy request

    def describe(self) -> dict[str, float]:
        return asdict(self)

    def __call__(self, app: WSGIApp) -> WSGIApp:
        return _Shaped(app, self)


FIGURES = [
    (
        "first-byte latency",
        "20 ms per request",
        "Amazon S3 Express One Zone is documented as single-digit-millisecond access, up to 10x faster than "
        "S3 Standard (https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-express-one-zone.html), i.e. "
        "S3 Standard requests take tens of milliseconds; measured in-region from Lambda: 60-120 ms for a "
        "60 KB PUT (https://kkc.github.io/2020/03/16/s3-latency/). 20 ms is the optimistic end (a warm, "
        "kept-alive connection in the same region), so the model favours neither system: both pay it on "
        "every request, and ocs_ingester makes fewer.",
    ),
    (
        "per-connection throughput",
        "90 MB/s",
        "AWS's performance guidelines: make one concurrent request for each 85-90 MB/s of desired network "
        "throughput (https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance-guidelines.html"
        ", 'Horizontal scaling of storage connections').",
    ),
    (
        "server-side copy rate",
        "60 MB/s per CopyObject / UploadPartCopy request, parts in parallel",
        "A 4 GB object copied with one CopyObject took 72 s (~57 MB/s) and 20 s as parallel part copies "
        "(s3fs-fuse, https://github.com/s3fs-fuse/s3fs-fuse/pull/940); S3's own guidance for large objects is "
        "parallel UploadPartCopy (https://docs.aws.amazon.com/AmazonS3/latest/userguide/CopyingObjectsMPUapi.html).",
    ),
]


def _object_size(copy_source: str) -> int:
    """The size of the CopySource object, asked of moto's backend in this process (no request)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    source, _, query = unquote(copy_source).lstrip("/").partition("?")
    bucket, _, key = source.partition("/")
    version = query.split("versionId=", 1)[1].split("&", 1)[0] if "versionId=" in query else None
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    try:
        found = backend.get_object(bucket, key, version_id=version)
    except Exception:
        return 0
    return int(found.size) if found is not None else 0


def _copied_bytes(environ: dict[str, Any]) -> int:
    byte_range = environ.get("HTTP_X_AMZ_COPY_SOURCE_RANGE", "")
    if byte_range.startswith("bytes="):
        first, _, last = byte_range[6:].partition("-")
        return int(last) - int(first) + 1
    return _object_size(environ["HTTP_X_AMZ_COPY_SOURCE"])


class _Shaped:
    def __init__(self, app: WSGIApp, model: S3Model) -> None:
        self.app = app
        self.model = model
        self.lock = threading.Lock()
        self.requests = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET") or environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self.app(environ, start_response)  # not S3
        with self.lock:
            self.requests += 1
        began = time.monotonic()
        model = self.model
        if environ.get("REQUEST_METHOD") == "PUT" and environ.get("HTTP_X_AMZ_COPY_SOURCE"):
            # Copied on S3's side: the request lasts at least the copy's modelled time.
            done = began + model.first_byte_s + _copied_bytes(environ) / model.copy_rate
        else:
            sent = int(environ.get("CONTENT_LENGTH") or 0)  # a request body arrives at the connection's rate
            done = began + model.first_byte_s + sent / model.connection_rate
        body = self.app(environ, start_response)
        return self._paced(body, done)

    def _paced(self, body: Iterable[bytes], first_byte_at: float) -> Iterator[bytes]:
        rate = self.model.connection_rate
        try:
            _sleep_until(first_byte_at)
            started, count = time.monotonic(), 0
            for piece in body:
                view = memoryview(piece)
                for i in range(0, len(view), SEND_SLICE):
                    part = view[i : i + SEND_SLICE]
                    count += len(part)
                    _sleep_until(started + count / rate)  # a slice leaves once the rate allows all of it
                    yield part  # a view: the local S3's server writes it as it is (no copy)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


def _sleep_until(deadline: float) -> None:
    wait = deadline - time.monotonic()
    if wait > 0:
        time.sleep(wait)
