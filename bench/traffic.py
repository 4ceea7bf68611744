"""Count the bytes an ingesting process moves over S3, per bucket, at the HTTP layer.

Counting here rather than with botocore event hooks because lambda_ingest creates its clients from
fresh `boto3.session.Session()`s and ocs_archive from the default session: patching the one place every
botocore request goes through (`URLLib3Session.send`) and the one place every response body is read
(`urllib3.HTTPResponse.read`) sees them all, and counts what was really read, not what was offered
(a streamed body closed early counts only the part consumed).

Only S3 requests are attributed to a bucket (path-style URLs: the first path segment). Other AWS calls
(DynamoDB for idempotency: JSON protocol, `X-Amz-Target` header) are counted apart. HTTP calls made with
`requests` (the archive API) are not counted: they are not data bytes.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

OTHER = "(other AWS)"


@dataclass
class Traffic:
    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, table: dict[str, int], bucket: str, n: int) -> None:
        if n:
            with self._lock:
                table[bucket] += n

    def reset(self) -> None:
        with self._lock:
            for table in (self.received, self.sent, self.requests):
                table.clear()

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "received": dict(self.received),
                "sent": dict(self.sent),
                "requests": dict(self.requests),
            }


_installed: Traffic | None = None
_current = threading.local()  # the bucket of the request being sent by this thread (bodies read inside send)


def _target(request: Any) -> str:
    headers = request.headers
    if headers.get("X-Amz-Target"):
        return OTHER
    path = urlsplit(request.url).path.lstrip("/")
    return unquote(path.split("/", 1)[0]) or OTHER


@dataclass
class _Request:
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def _body_length(request: Any) -> int:
    headers = request.headers
    # aws-chunked uploads carry the payload size apart from the encoded length.
    for name in ("X-Amz-Decoded-Content-Length", "Content-Length"):
        value = headers.get(name)
        if value is not None:
            return int(value)
    body = request.body
    return len(body) if isinstance(body, bytes | bytearray) else 0


def install() -> Traffic:
    """Patch botocore and urllib3 in this process (idempotent); returns the live counters."""
    global _installed
    if _installed is not None:
        return _installed
    import botocore.httpsession
    import urllib3
    import urllib3.response

    traffic = Traffic()
    original_send = botocore.httpsession.URLLib3Session.send
    original_read = urllib3.response.HTTPResponse.read
    original_read1 = urllib3.response.HTTPResponse.read1

    def send(self: Any, request: Any) -> Any:
        target = _target(request)
        with traffic._lock:
            traffic.requests[f"{request.method} {target}"] += 1
        # Data sent: object bodies (PutObject, UploadPart) go in PUTs; S3's POSTs carry small XML
        # (CompleteMultipartUpload), other AWS calls (DynamoDB) JSON in POSTs.
        if request.method == "PUT" or (request.method == "POST" and target == OTHER):
            traffic.add(traffic.sent, target, _body_length(request))
        _current.target = target
        try:
            response = original_send(self, request)
        finally:
            _current.target = None
        # Streamed bodies (GetObject) are read after send returns: tag the raw response.
        response.raw._bench_target = target
        return response

    def counted(original: Any) -> Any:
        def read(self: Any, *args: Any, **kwargs: Any) -> bytes:
            data = original(self, *args, **kwargs)
            target = getattr(self, "_bench_target", None) or getattr(_current, "target", None)
            if target is not None:
                traffic.add(traffic.received, target, len(data))
            return data

        return read

    original_urlopen = urllib3.PoolManager.urlopen

    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        # Presigned requests made outside botocore (lambda_ingest's md5 stream: one GET per byte range,
        # read straight from the socket, past urllib3's read): counted here, the body by its length.
        target = _target(_Request(url))
        with traffic._lock:
            traffic.requests[f"{method} {target}"] += 1
        response = original_urlopen(self, method, url, *args, **kwargs)
        if 200 <= response.status < 300:
            traffic.add(traffic.received, target, int(response.headers.get("Content-Length") or 0))
        return response

    botocore.httpsession.URLLib3Session.send = send  # type: ignore[method-assign]
    urllib3.PoolManager.urlopen = urlopen  # type: ignore[method-assign]
    urllib3.response.HTTPResponse.read = counted(original_read)  # type: ignore[method-assign]
    urllib3.response.HTTPResponse.read1 = counted(original_read1)  # type: ignore[method-assign]
    _installed = traffic
    return traffic
