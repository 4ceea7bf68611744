"""GETs of an object, or of one byte range of it, answered straight from moto's backend, ahead of moto's web stack.

moto's server spends ~2 ms of CPU on every request (Flask dispatch, parsing the request into an
S3Response, building the answer) before a byte of the object moves. The md5 stream of a multipart frame
asks for one 2 MiB range per request, 512 per GB: on this 2-core machine the local S3 then took as much
CPU as md5 itself, and every streamed md5 measured moto rather than the design; a whole-object GET joined
the object's parts into one new copy (1 GB allocated and freed per read). This WSGI middleware answers the
common case itself: a GET of an existing object or of one byte range of it, by path, optionally
pinned to a version and an ETag (``If-Match``), signed or presigned. It answers with the headers moto
gives (``tests/unit/local/test_local_s3.py`` compares them), and with the stored bytes themselves (read-only
views, which the server writes to the socket: no copy). Anything else, including every error, goes to moto
unchanged.

Hand-written: moto has no cheaper path for this request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, unquote

from lambda_ingest.local.moto_storage import SharedBuffer

__all__ = ["FastRangedGets"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9._/\-]+")  # names whose path needs no decoding subtleties
_LOCAL_HOST = re.compile(r"(127\.0\.0\.1|localhost|\[::1\])(:\d+)?")  # path-style requests only
# Headers that change the answer (conditions, encryption with a customer key, CORS): moto's.
_DELEGATED_HEADERS = (
    "HTTP_ORIGIN",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_CUSTOMER_ALGORITHM",
    "HTTP_X_AMZ_EXPECTED_BUCKET_OWNER",
)
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_PRESIGNED_V2 = {"AWSAccessKeyId", "Signature", "Expires"}  # query authentication, signature version 2


def _access_key(environ: dict[str, Any], query: dict[str, list[str]]) -> str:
    found = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if found:
        return found.group(1)
    credential = query.get("X-Amz-Credential", query.get("AWSAccessKeyId", [""]))[0]
    return credential.split("/", 1)[0]


class FastRangedGets:
    """WSGI middleware in front of moto's application: GETs of objects (whole or one range), served directly."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        answer = self._answer(environ)
        if answer is None:
            return self.app(environ, start_response)
        status, headers, body = answer
        start_response(status, list(headers.items()))
        return body

    def _answer(self, environ: dict[str, Any]) -> tuple[str, dict[str, str], list[Any]] | None:
        from moto.settings import DISABLE_GLOBAL_CORS

        if environ.get("REQUEST_METHOD") != "GET" or any(environ.get(h) for h in _DELEGATED_HEADERS):
            return None
        asked = environ.get("HTTP_RANGE")
        wanted = _RANGE.fullmatch(asked) if asked else None
        path = environ.get("PATH_INFO", "")
        if (
            (asked and not wanted)
            or not _LOCAL_HOST.fullmatch(environ.get("HTTP_HOST", ""))
            or not _PLAIN_KEY.fullmatch(path)
        ):
            return None
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if any(name != "versionId" and name not in _PRESIGNED_V2 and not name.startswith("X-Amz-") for name in query):
            return None
        if not (environ.get("HTTP_AUTHORIZATION") or "X-Amz-Signature" in query or "Signature" in query):
            return None  # anonymous: moto refuses it, as S3 does for a private bucket
        bucket_name, _, key_name = unquote(path).lstrip("/").partition("/")
        if not key_name:
            return None
        key = self._key(bucket_name, key_name, query.get("versionId", [None])[0], _access_key(environ, query))
        if key is None:
            return None
        if_match = environ.get("HTTP_IF_MATCH")
        if if_match and key.etag not in (if_match, f'"{if_match}"'):
            return None  # moto answers 412
        first, last = (int(wanted.group(1)), int(wanted.group(2))) if wanted else (0, key.size - 1)
        if first > last or first >= key.size:
            return None  # moto answers (416, the whole object, an empty one)
        last = min(last, key.size - 1)
        body: list[Any] = key._value_buffer.view(first, last + 1).parts  # views of the stored bytes: no copy
        headers: dict[str, str] = {}
        if key.version_id != "null":
            headers["x-amz-version-id"] = str(key.version_id)
        headers.update(key.response_dict)
        if environ.get("HTTP_X_AMZ_CHECKSUM_MODE") == "ENABLED" and key.checksum_algorithm:
            # botocore asks for it on every GetObject; moto answers the object's stored checksum
            checksum = key.checksum_value
            if key.checksum_type == "COMPOSITE":
                checksum = f"{checksum}-{key.checksum_parts}"
            headers[f"x-amz-checksum-{key.checksum_algorithm.lower()}"] = checksum
            if key.checksum_type:
                headers["x-amz-checksum-type"] = key.checksum_type
        headers.update(key.metadata)
        headers["Accept-Ranges"] = "bytes"
        if wanted:
            headers["content-range"] = f"bytes {first}-{last}/{key.size}"
        headers["content-length"] = str(last - first + 1)
        if not DISABLE_GLOBAL_CORS:  # moto's server adds it to every answer
            headers["Access-Control-Allow-Origin"] = "*"
        return ("206 Partial Content" if wanted else "200 OK"), headers, body

    @staticmethod
    def _key(bucket_name: str, key_name: str, version_id: str | None, access_key: str) -> Any:
        """The object moto would serve from shared storage, or None where moto must answer (missing,
        archived, another account's)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.iam.models import get_account_id_from
        from moto.s3.models import ARCHIVE_STORAGE_CLASSES, FakeDeleteMarker, s3_backends

        if get_account_id_from(access_key) != DEFAULT_ACCOUNT_ID:
            return None
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        if bucket_name not in backend.buckets:
            return None
        try:
            key = backend.get_object(bucket_name, key_name, version_id=version_id)
        except Exception:  # moto's own errors (a bad version id...) are moto's to answer
            return None
        if key is None or isinstance(key, FakeDeleteMarker) or key.storage_class in ARCHIVE_STORAGE_CLASSES:
            return None
        if not isinstance(key._value_buffer, SharedBuffer):  # stored before shared storage was installed
            return None
        return key
