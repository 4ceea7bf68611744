"""A local HTTP stand-in for the OCS Science Archive: the calls an ingester makes, as the archive answers them.

Faithful to docs/science-archive-api.md on what an ingester meets: `POST frames/` with DRF's validation and
error bodies (HTML 500 pages where the archive crashes), `POST thumbnails/` (an upsert, 201 without id),
`GET frames/?basename_exact=`, `GET versions/` (its md5 filter ignored), the token rules, the 301 of a path
without its slash, the HTML 404 of a wrong API root; download URLs built by ocs_archive from the frame's
fields and presigned. Nothing else (detail views, searches): an ingester never calls it. Tests inject faults
and can refuse connections. Every start() begins with an empty archive.

    with ArchiveEmulator(s3_client=s3, bucket="archive") as archive:
        requests.post(archive.api_root + "frames/", json=record,
                      headers={"Authorization": f"Token {archive.admin_token}"}, timeout=10)
        archive.inject(status=503)          # the next POST fails
        assert archive.frames()[0]["basename"] == record["basename"]
"""

from __future__ import annotations

import hmac
import ipaddress
import itertools
import json
import logging
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

from ocs_archive.input.file import EmptyFile
from ocs_archive.input.filefactory import FileFactory
from ocs_archive.settings import settings as archive_settings

logger = logging.getLogger(__name__)

DEFAULT_CONFIGURATION_TYPES = tuple(
    "BIAS DARK EXPOSE SPECTRUM LAMPFLAT SKYFLAT STANDARD TRAILED GUIDE EXPERIMENTAL CATALOG".split()  # noqa: SIM905
)
THUMBNAIL_SIZES = ("small", "medium", "large")
PRESIGNED_URL_EXPIRY = 3600 * 48  # seconds, as the archive's Version.url
PAGE_LIMIT, MAX_PAGE_LIMIT = 100, 1000  # DRF's LimitOffsetPagination as the archive configures it

# The contract's own field table (docs/science-archive-api.md), on purpose not lambda_ingest.record's
# limits, so that "refused before POST" tests compare two readings. Text field -> (max length, blank ok).
TEXT_FIELDS: dict[str, tuple[int, bool]] = {
    "site_id": (3, False),
    "telescope_id": (4, False),
    "instrument_id": (64, False),
    "proposal_id": (200, True),
    "target_name": (200, True),
    "primary_optical_element": (100, True),
}
VERSION_FIELDS = {"key": 32, "md5": 32, "extension": 20}
MAX_BASENAME = 1000  # a database column limit only: longer gives a 500, not a 400
# The frame's other columns and their model defaults, in the order FrameSerializer renders them.
_COLUMNS: dict[str, Any] = {
    "reduction_level": 0,
    "observation_day": None,
    "observation_date": None,
    **{name: "" for name in ("proposal_id", "instrument_id", "target_name", "site_id", "telescope_id")},
    "exposure_time": None,
    "primary_optical_element": "",
    "public_date": None,
    "configuration_type": "",
    "observation_id": None,
    "request_id": None,
}
_NOT_NULL, _REQUIRED = "This field may not be null.", "This field is required."
_ROUTE = re.compile(r"/(frames|thumbnails|versions)/")
_PAGE = '<!doctype html>\n<html lang="en">\n<head>\n  <title>{title}</title>\n</head>\n<body>\n  <h1>{title}</h1><p>{text}</p>\n</body>\n</html>\n'  # noqa: E501
_PAGE_500 = _PAGE.format(title="Server Error (500)", text="")
_PAGE_404 = _PAGE.format(title="Not Found", text="The requested resource was not found on this server.")
_PROXY_PAGE = "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"  # noqa: E501


# ---------------------------------------------------------------------------------------------------
# Responses


@dataclass(eq=False)  # an exception stays hashable
class _Response(Exception):  # raised to answer at once (an error), returned otherwise
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()  # DRF's JSONRenderer
    return _Response(status, body, headers=headers or {})


def _html(status: int, page: str) -> _Response:
    return _Response(status, page.encode(), "text/html; charset=utf-8")


def _crash() -> _Response:
    """Where the archive raises an uncaught exception: Django's HTML 500 page."""
    return _html(500, _PAGE_500)


def _unauthorized(detail: str) -> _Response:
    return _json(401, {"detail": detail}, {"WWW-Authenticate": "Token"})


def _fault_response(status: int) -> _Response:
    phrase = next((known.phrase for known in HTTPStatus if known == status), "Unknown")
    if status == 500:
        return _html(500, _PAGE_500)
    if status > 500:  # what nginx or a load balancer in front of the archive answers
        return _html(status, _PROXY_PAGE.format(title=f"{status} {phrase}"))
    if status == 429:
        return _json(429, {"detail": "Request was throttled. Expected available in 1 second."}, {"Retry-After": "1"})
    return _json(status, {"detail": phrase})


# ---------------------------------------------------------------------------------------------------
# DRF's field parsing: each parser returns the clean value or raises _Invalid with DRF's messages.


class _Invalid(Exception):
    """args[0] is DRF's error detail for the field."""


def _not_null(value: Any) -> Any:
    if value is None:
        raise _Invalid([_NOT_NULL])
    return value


def _char(value: Any, max_length: int | None = None, blank: bool = False) -> str:
    if isinstance(_not_null(value), bool) or not isinstance(value, str | int | float):
        raise _Invalid(["Not a valid string."])
    text = str(value).strip()  # DRF's CharField trims
    if not text and not blank:
        raise _Invalid(["This field may not be blank."])
    if max_length is not None and len(text) > max_length:
        raise _Invalid([f"Ensure this field has no more than {max_length} characters."])
    return text


def _integer(value: Any, low: int, high: int, null: bool = True) -> int | None:
    if value is None and null:
        return None
    try:  # DRF accepts 12, "12", 12.0 and "12.0"; not 12.5, True nor null
        number = int(re.sub(r"\.0*\s*$", "", str(_not_null(value))))
    except ValueError:
        raise _Invalid(["A valid integer is required."]) from None
    if not low <= number <= high:
        bound = f"greater than or equal to {low}" if number < low else f"less than or equal to {high}"
        raise _Invalid([f"Ensure this value is {bound}."])
    return number


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        raise _Invalid(["A valid number is required."]) from None


def _datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        formats = "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]"
        raise _Invalid([f"Datetime has wrong format. Use one of these formats instead: {formats}."]) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)  # naive is UTC


def _day(value: Any) -> date:
    text = value if isinstance(_not_null(value), str) else ""
    with suppress(ValueError):
        if match := re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text):  # Django's parse_date
            return date(*map(int, match.groups()))
        return datetime.strptime(text, "%Y%m%d").date()
    raise _Invalid(["Date has wrong format. Use one of these formats instead: YYYY-MM-DD, YYYYMMDD."])


def _choice(value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(_not_null(value), str) and value in choices:
        return value
    raise _Invalid([f'"{value}" is not a valid choice.'])


def _items(value: Any) -> list[Any]:
    if not isinstance(_not_null(value), list):
        raise _Invalid([f'Expected a list of items but got type "{type(value).__name__}".'])
    return value


def _names(value: Any) -> list[str]:
    names, errors = [], {}
    for index, item in enumerate(_items(value)):
        try:
            names.append(_char(item))
        except _Invalid as exc:
            errors[str(index)] = exc.args[0]
    if errors:
        raise _Invalid(errors)
    return names


def _area(value: Any) -> dict[str, Any] | None:
    """GEOS parses any GeoJSON geometry (else 400); only a Polygon fits the column (else a 500 on save)."""
    kind = value.get("type") if isinstance(value, dict) else None
    rings = value.get("coordinates") if kind == "Polygon" else None
    if value is None or (isinstance(rings, list) and all(_closed_ring(ring) for ring in rings)):
        return value
    if kind in ("Point", "LineString", "MultiPoint", "MultiLineString", "MultiPolygon") and "coordinates" in value:
        raise _crash()
    raise _Invalid([f"Invalid polygon: {value!r}"])


def _closed_ring(ring: Any) -> bool:
    """GEOS's LinearRing: closed, of at least four positions."""
    return isinstance(ring, list) and len(ring) >= 4 and ring[0] == ring[-1] and all(isinstance(p, list) for p in ring)


def _parse_into(clean: dict[str, Any], data: dict[str, Any], parsers: dict[str, Callable], required: set[str]) -> dict:
    """Run each field's parser on `data` into `clean`; returns DRF's error body (empty when valid)."""
    errors: dict[str, Any] = {}
    for name, parse in parsers.items():
        if name not in data:
            if name in required:
                errors[name] = [_REQUIRED]
            continue
        try:
            clean[name] = parse(data[name])
        except _Invalid as exc:
            errors[name] = exc.args[0]
    return errors


def _parse_body(content_type: str, body: bytes) -> Any:
    media_type = content_type.split(";")[0].strip().lower()
    if media_type != "application/json":
        raise _crash()  # the view calls len() on a form's version_set string
    try:
        return json.loads(body.decode() or "{}")
    except ValueError as exc:
        raise _json(400, {"detail": f"JSON parse error - {exc}"}) from None


def _render(value: Any) -> Any:
    """DRF's rendering of dates and UTC datetimes."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat() if isinstance(value, date) else value


def _filestore_path(filename: str, metadata: dict[str, Any]) -> str:
    """The archive's get_file_store_path: ocs_archive's data file class for the extension decides."""
    empty_file = EmptyFile(filename)
    data_file_class = FileFactory.get_datafile_class_for_extension(empty_file.extension)
    return str(data_file_class(empty_file, metadata, {}, {}).get_filestore_path())


def _page(params: dict[str, list[str]], base: str, results: list[Any]) -> dict[str, Any]:
    """DRF's LimitOffsetPagination of `results`."""
    limit, offset = PAGE_LIMIT, 0
    with suppress(KeyError, ValueError):
        if (asked := int(params["limit"][-1])) > 0:
            limit = min(asked, MAX_PAGE_LIMIT)
    with suppress(KeyError, ValueError):
        offset = max(int(params["offset"][-1]), 0)

    def link(at: int) -> str:
        query = {name: values for name, values in params.items() if name != "offset"}
        query["limit"] = [str(limit)]
        if at > 0:
            query["offset"] = [str(at)]
        return f"{base}?{urlencode(sorted(query.items()), doseq=True)}"

    return {
        "count": len(results),
        "next": link(offset + limit) if offset + limit < len(results) else None,
        "previous": link(offset - limit) if offset > 0 else None,
        "results": results[offset : offset + limit],
        "count_estimated": False,
    }


# ---------------------------------------------------------------------------------------------------
# The emulator


@dataclass
class _Frame:
    id: int
    basename: str
    fields: dict[str, Any] = field(default_factory=dict)  # the model's columns and area, as validated
    headers: Any = None
    versions: list[dict[str, Any]] = field(default_factory=list)  # {id, created, key, md5, extension}, newest first
    related: list[int] = field(default_factory=list)

    @property
    def hidden(self) -> bool:
        """Without a version or an observation date a frame is in no list."""
        return not self.versions or self.fields.get("observation_date") is None


@dataclass
class _Fault:
    status: int | None
    remaining: int
    method: str | None
    path_prefix: str
    delay: float
    reset: bool
    after: bool


class ArchiveEmulator:
    """The Science Archive API on a loopback port, in memory.

    `admin_token` is a superuser's (writes, versions/); `user_token` an ordinary user's: refused writes, and
    a 500 on `GET frames/` (the archive asks the Observation Portal for that user's proposals, unreachable
    here). Anonymous readers see public frames.
    """

    def __init__(
        self,
        *,
        admin_token: str = "local-admin-token",
        user_token: str = "local-user-token",
        s3_client: Any = None,
        bucket: str = "testbucket",
        configuration_types: tuple[str, ...] = DEFAULT_CONFIGURATION_TYPES,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        host = "127.0.0.1" if host == "localhost" else host
        if not ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).version != 4:
            raise ValueError(f"the archive emulator binds to IPv4 loopback only, not {host!r}")
        self.admin_token, self.user_token = admin_token, user_token
        self.s3_client, self.bucket = s3_client, bucket
        self.configuration_types = tuple(configuration_types)
        self.host, self._port = host, port
        # (method, path with query, status); status None when the connection was dropped. Never tokens.
        self.requests_seen: list[tuple[str, str, int | None]] = []
        self._lock = threading.RLock()  # the archive's state, the faults and requests_seen
        self._faults: list[_Fault] = []
        self._server: _Server | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._stopping = threading.Event()
        self._frames: dict[str, _Frame] = {}
        self._thumbnails: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> ArchiveEmulator:
        """Serve an empty archive on `api_root` from a background thread (idempotent)."""
        with self._lock:
            if self._server is None:
                self._frames, self._thumbnails, self._ids = {}, {}, itertools.count(1)
                self._stopping.clear()
                self._listen()
        return self

    def stop(self) -> None:
        """Stop serving and end open connections (what was stored stays inspectable)."""
        with self._lock:
            if self._server is None:
                return
            self._stopping.set()  # wakes delayed requests
            threads = self._close_listener()
        for thread in threads:
            thread.join(timeout=2)

    def __enter__(self) -> ArchiveEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def api_root(self) -> str:
        return f"http://{self.host}:{self._port}/"

    @contextmanager
    def refusing_connections(self) -> Iterator[None]:
        """Close the listening socket (clients get ECONNREFUSED); listen again on the same port on exit."""
        with self._lock:
            if self._server is None:
                raise RuntimeError("the emulator is not running")
            self._close_listener()
        try:
            yield
        finally:
            with self._lock:
                self._listen()

    def _listen(self) -> None:
        self._server = _Server((self.host, self._port), self)
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def _close_listener(self) -> list[threading.Thread]:
        server, self._server = self._server, None
        assert server is not None
        server.shutdown()
        server.server_close()
        for connection in list(self._connections):  # kept-alive connections would still be answered
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        return list(self._connections.values())

    # -- inspection for tests -------------------------------------------------------------------------

    def frames(self) -> list[dict[str, Any]]:
        """Every stored frame, oldest first: its fields, `headers`, `version_set` and whether it is `hidden`.

        No URLs: a presigned URL changes with the second it is made, and tests compare these snapshots.
        """
        with self._lock:
            return [
                {"id": f.id, "basename": f.basename, "area": f.fields.get("area"), "related_frames": list(f.related)}
                | {name: _render(f.fields.get(name, default)) for name, default in _COLUMNS.items()}
                | {"version_set": [{**v, "created": _render(v["created"])} for v in f.versions]}
                | {"headers": f.headers, "hidden": f.hidden}
                for f in sorted(self._frames.values(), key=lambda f: f.id)
            ]

    def versions(self) -> list[dict[str, Any]]:
        """Every stored version, oldest first, with its frame's id (`frame_id`) and `basename`."""
        rows = [
            {**version, "frame_id": frame["id"], "basename": frame["basename"]}
            for frame in self.frames()
            for version in frame["version_set"]
        ]
        return sorted(rows, key=lambda row: row["id"])

    def thumbnails(self) -> list[dict[str, Any]]:
        """Every stored thumbnail, oldest first, with its frame's id (`frame_id`) and `frame_basename`."""
        with self._lock:
            rows = [
                {**{k: v for k, v in t.items() if k != "frame"}, "frame_id": t["frame"].id}
                | {"frame_basename": t["frame"].basename}
                for t in self._thumbnails.values()
            ]
        return sorted(rows, key=lambda row: row["id"])

    # -- fault injection ------------------------------------------------------------------------------

    def set_md5(self, basename: str, md5: str) -> None:
        """Change the md5 the archive holds for the newest version of `basename` (an audit's md5 mismatch)."""
        with self._lock:
            self._frames[basename].versions[0]["md5"] = md5

    def inject(
        self,
        *,
        status: int | None = None,
        count: int = 1,
        method: str | None = "POST",
        path_prefix: str = "",
        delay: float = 0.0,
        reset: bool = False,
        after: bool = False,
    ) -> None:
        """Make the next `count` matching requests fail.

        A request matches when its method equals `method` (None: any) and its path relative to the API root
        starts with `path_prefix` (e.g. "frames/"). It waits `delay` seconds, then drops the connection
        (`reset`) or answers `status` (an HTML page for 5xx, DRF JSON otherwise) instead of being handled;
        with neither it is answered normally. With `after`, the request is handled first (a frame is
        committed) and `status` replaces the answer, as when the archive fails rendering it.
        """
        if count < 1 or delay < 0 or (status is not None and not 100 <= status <= 599):
            raise ValueError("count must be at least 1, delay not negative, status an HTTP status")
        if (status is not None and reset) or (status is None and (after or not (reset or delay))):
            raise ValueError("inject a status, a reset or a delay (`after` needs a status)")
        method = method.upper() if method else None
        with self._lock:
            self._faults.append(_Fault(status, count, method, path_prefix.lstrip("/"), delay, reset, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many injected failures are still to be served."""
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in (None, method) and path.lstrip("/").startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if not fault.remaining:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, method: str, target: str, status: int | None) -> None:
        with self._lock:
            self.requests_seen.append((method, target, status))

    # -- routing and authentication -------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, query: str, headers: Any, body: bytes, host: str) -> _Response:
        try:
            if not _ROUTE.fullmatch(path):
                if _ROUTE.fullmatch(path + "/"):  # Django's APPEND_SLASH, before any view or authentication
                    location = path + "/" + (f"?{query}" if query else "")
                    return _Response(301, content_type="text/html; charset=utf-8", headers={"Location": location})
                return _html(404, _PAGE_404)
            role = self._authenticate(headers.get("Authorization"))
            resource, base = path.strip("/"), f"http://{host}{path}"
            with self._lock:
                if method == "POST" and resource != "versions":
                    self._require_admin(role)
                    data = _parse_body(headers.get("Content-Type", ""), body)
                    return self._create_frame(data) if resource == "frames" else self._create_thumbnail(data)
                if method == "GET" and resource == "frames":
                    return self._list_frames(parse_qs(query), role, base)
                if method == "GET" and resource == "versions":
                    self._require_admin(role)
                    return self._list_versions(parse_qs(query), base)
            if method == "GET":  # the archive lists thumbnails too; an ingester never reads them
                return _html(501, "not emulated")
            return _json(405, {"detail": f'Method "{method}" not allowed.'})
        except _Response as response:
            return response
        except Exception:
            logger.exception("archive emulator: unhandled error on %s %s", method, path)
            return _html(500, _PAGE_500)

    def _authenticate(self, header: str | None) -> str | None:
        """DRF's TokenAuthentication: "admin", "user" or None (anonymous)."""
        parts = (header or "").split()
        if not parts or parts[0].lower() != "token":
            return None  # another scheme is not this authenticator's business
        for role, token in (("admin", self.admin_token), ("user", self.user_token)):
            if len(parts) == 2 and hmac.compare_digest(parts[1].encode(), token.encode()):
                return role
        raise _unauthorized("Invalid token.")

    @staticmethod
    def _require_admin(role: str | None) -> None:
        if role is None:
            raise _unauthorized("Authentication credentials were not provided.")
        if role != "admin":
            raise _json(403, {"detail": "You do not have permission to perform this action."})

    # -- POST frames/ and thumbnails/ -----------------------------------------------------------------

    def _create_frame(self, data: Any) -> _Response:
        # The archive's view does len(version_set) and version_set[0].get(...) before validating.
        version_set = data.get("version_set") if isinstance(data, dict) else None
        if not isinstance(version_set, list) or (version_set and not isinstance(version_set[0], dict)):
            raise _crash()
        clean, errors = self._validate_frame(data)
        if errors:
            return _json(400, errors)
        return _json(201, self._frame_body(self._save_frame(clean)))

    def _create_thumbnail(self, data: Any) -> _Response:
        # The archive validates the body as a frame, then takes key and extension from version_set[0].
        if not isinstance(data, dict):
            raise _crash()
        clean, errors = self._validate_frame(data)
        if errors:
            return _json(400, errors)
        if not clean["version_set"]:
            raise _crash()
        # basename, key and extension were checked as the frame's; the thumbnail adds its size.
        new = {name: clean["version_set"][0][name] for name in ("key", "extension")} | {"basename": clean["basename"]}
        if errors := _parse_into(new, data, {"size": partial(_choice, choices=THUMBNAIL_SIZES)}, {"size"}):
            return _json(400, errors)
        if "frame_basename" not in data:
            raise _crash()
        frame = self._frames.get(data["frame_basename"])
        if frame is None:  # made from the body's frame fields, with no version: hidden
            frame = self._save_frame({**clean, "basename": data["frame_basename"], "version_set": []})
        # An upsert by thumbnail basename: the newest key wins; the archive keeps no thumbnail versions.
        previous = self._thumbnails.get(new["basename"])
        self._thumbnails[new["basename"]] = {
            "id": previous["id"] if previous else next(self._ids),
            "frame": frame,
            **new,
        }
        body = {"frame": self._frame_body(frame), "size": new["size"], "basename": new["basename"]}
        fields = frame.fields
        metadata = {"SITEID": fields.get("site_id"), "INSTRUME": fields.get("instrument_id")}
        metadata |= {"TELID": fields.get("telescope_id"), "frame_basename": frame.basename, "size": new["size"]}
        if url := self._url(frame, new["basename"] + new["extension"], new["key"], metadata):
            body["url"] = url
        return _json(201, body | {"key": new["key"], "extension": new["extension"]})

    def _validate_frame(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """FrameSerializer's validation: (clean values, DRF's error body)."""
        clean: dict[str, Any] = {}
        parsers: dict[str, Callable[[Any], Any]] = {
            "basename": _char,
            "area": _area,
            "version_set": self._new_versions,
            "headers": _not_null,
            "reduction_level": partial(_integer, low=-32768, high=32767, null=False),
            "observation_day": _day,
            "observation_date": _datetime,
            **{name: partial(_char, max_length=n, blank=blank) for name, (n, blank) in TEXT_FIELDS.items()},
            "exposure_time": _number,
            "public_date": _datetime,
            "configuration_type": partial(_choice, choices=self.configuration_types),
            "observation_id": partial(_integer, low=0, high=2147483647),
            "request_id": partial(_integer, low=0, high=2147483647),
            "related_frame_filenames": _names,
        }
        required = {"basename", "area", "version_set", "headers", "observation_day", "configuration_type"}
        errors = _parse_into(clean, data, parsers, required | {"related_frame_filenames"})
        if not errors:
            keys, md5s = ([v[name] for v in clean["version_set"]] for name in ("key", "md5"))
            if len(set(keys)) < len(keys) or len(set(md5s)) < len(md5s):
                raise _crash()  # the unique validators look at stored rows only; the insert then fails
            if any(len(name) > MAX_BASENAME for name in (clean["basename"], *clean["related_frame_filenames"])):
                raise _crash()
        return clean, errors

    def _new_versions(self, value: Any) -> list[dict[str, str]]:
        """The nested VersionSerializer(many=True): one error dict per item; md5 and key unique archive-wide."""
        try:
            items = _items(value)
        except _Invalid as exc:
            raise _Invalid({"non_field_errors": exc.args[0]}) from None
        stored = [v for frame in self._frames.values() for v in frame.versions]
        clean, errors = [], []
        for item in items:
            if not isinstance(item, dict):
                kind = type(item).__name__
                errors.append({"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]})
                continue
            version: dict[str, str] = {}
            parsers = {name: partial(_char, max_length=n) for name, n in VERSION_FIELDS.items()}
            item_errors = _parse_into(version, item, parsers, required=set(parsers))
            for name in ("key", "md5"):
                if any(v[name] == version.get(name) for v in stored):
                    item_errors[name] = [f"version with this {name} already exists."]
            errors.append(item_errors)
            clean.append(version)
        if any(errors):
            raise _Invalid(errors)
        return clean

    def _save_frame(self, clean: dict[str, Any]) -> _Frame:
        """update_or_create by basename: the fields sent replace the stored ones; the versions are added."""
        frame = self._frames.get(clean["basename"]) or _Frame(next(self._ids), clean["basename"])
        self._frames[frame.basename] = frame
        frame.fields.update({name: value for name, value in clean.items() if name in _COLUMNS or name == "area"})
        frame.headers = clean["headers"]
        for version in clean["version_set"]:
            frame.versions.insert(0, {"id": next(self._ids), "created": datetime.now(UTC), **version})
        for name in clean["related_frame_filenames"]:
            if name != frame.basename:  # each related name is at least a hidden placeholder frame
                related = self._frames.get(name) or _Frame(next(self._ids), name)
                self._frames[name] = related
                for one, other in ((frame, related), (related, frame)):  # a symmetrical many-to-many
                    one.related = sorted({*one.related, other.id})
        return frame

    # -- representations ------------------------------------------------------------------------------

    def _frame_body(self, frame: _Frame) -> dict[str, Any]:
        """FrameSerializer's output (here also the shape of list results; the archive adds old FITS names)."""
        body: dict[str, Any] = {"id": frame.id, "basename": frame.basename, "area": frame.fields.get("area")}
        body["related_frames"] = list(frame.related)
        body["version_set"] = [self._version_body(frame, version) for version in frame.versions]
        if frame.versions:
            body["filename"] = frame.basename + frame.versions[0]["extension"]
            if url := self._url(frame, body["filename"], frame.versions[0]["key"]):
                body["url"] = url
        return body | {name: _render(frame.fields.get(name, default)) for name, default in _COLUMNS.items()}

    def _version_body(self, frame: _Frame, version: dict[str, Any]) -> dict[str, Any]:
        item = {name: _render(version[name]) for name in ("id", "created", "key", "md5", "extension")}
        # Its own versionId, under the frame's current filename (newest extension): the archive's quirk.
        if url := self._url(frame, frame.basename + frame.versions[0]["extension"], version["key"]):
            item["url"] = url
        return item

    def _url(self, frame: _Frame, filename: str, version_id: str, metadata: dict | None = None) -> str | None:
        """A presigned download URL at ocs_archive's path for the frame's fields (`metadata` for thumbnails).

        None where the archive's property raises (no observation date): DRF then leaves the field out.
        """
        fields = frame.fields
        if fields.get("observation_date") is None:
            return None
        if metadata is None:  # Frame.get_header_dict(): the columns under ocs_archive's header names
            metadata = {
                getattr(archive_settings, f"{name.upper()}_KEY"): fields.get(name, _COLUMNS[name]) for name in _COLUMNS
            }
        day, when = archive_settings.OBSERVATION_DAY_KEY, archive_settings.OBSERVATION_DATE_KEY
        metadata |= {day: fields["observation_day"].strftime("%Y%m%d"), when: fields["observation_date"].isoformat()}
        if self.s3_client is None:  # presigning is offline: a client with placeholder credentials will do
            import boto3

            self.s3_client = boto3.client(
                "s3", region_name="us-east-1", aws_access_key_id="emulator", aws_secret_access_key="emulator"
            )
        params = {"Bucket": self.bucket, "Key": _filestore_path(filename, metadata), "VersionId": version_id}
        return str(self.s3_client.generate_presigned_url("get_object", Params=params, ExpiresIn=PRESIGNED_URL_EXPIRY))

    # -- GET frames/ and versions/ --------------------------------------------------------------------

    def _list_frames(self, params: dict[str, list[str]], role: str | None, base: str) -> _Response:
        if role == "user":
            raise _crash()  # the archive asks the unreachable Observation Portal for the user's proposals
        now = datetime.now(UTC)
        exact = params.get("basename_exact", [None])[-1]
        frames = [
            frame
            for frame in self._frames.values()
            if not frame.hidden
            and (role == "admin" or (frame.fields.get("public_date") or now) < now)
            and exact in (None, frame.basename)
        ]
        frames.sort(key=lambda f: (f.fields["observation_date"], f.id), reverse=True)
        return _json(200, _page(params, base, [self._frame_body(frame) for frame in frames]))

    def _list_versions(self, params: dict[str, list[str]], base: str) -> _Response:
        # The archive's view declares `filter_fields`, which django-filter 25 no longer reads: ?md5= (and
        # every other filter) is ignored and every version comes back.
        rows = sorted(((v, f) for f in self._frames.values() for v in f.versions), key=lambda r: -r[0]["id"])
        return _json(200, _page(params, base, [self._version_body(frame, version) for version, frame in rows]))


# ---------------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() ends and joins the handler threads itself
    allow_reuse_address = True  # listening again on the same port after refusing_connections()
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], emulator: ArchiveEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("archive emulator: connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn behind nginx
    server_version = "ArchiveEmulator/2"
    timeout = 60  # an idle kept-alive connection ends after this
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm would hold the body
    # until the client's delayed ACK (~40 ms) on every kept-alive request. A real archive does not.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.emulator._lock:
            self.server.emulator._connections[self.connection] = threading.current_thread()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.emulator._lock:
                self.server.emulator._connections.pop(self.connection, None)

    def log_message(self, format: str, *args: Any) -> None:  # the request line only, never headers
        logger.debug("archive emulator: " + format, *args)

    def _handle(self) -> None:
        emulator, method, target = self.server.emulator, self.command, self.path
        path, _, query = target.partition("?")
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        except (OSError, ValueError):
            self.close_connection = True
            return
        fault = emulator._take_fault(method, path)
        if fault is not None and fault.delay and emulator._stopping.wait(fault.delay):
            return self._drop()  # stopping: give up on this request
        if fault is not None and fault.reset:
            emulator._record(method, target, None)
            return self._drop()
        if fault is None or fault.status is None or fault.after:
            host = self.headers.get("Host") or f"{emulator.host}:{emulator.port}"
            response = emulator._dispatch(method, path, query, self.headers, body, host)
        if fault is not None and fault.status is not None:
            response = _fault_response(fault.status)
        # Recorded before it is answered, so a client sees its request in requests_seen at once.
        emulator._record(method, target, response.status)
        headers = {"Content-Type": response.content_type, "Content-Length": str(len(response.body))}
        try:
            self.send_response(response.status)
            for name, value in (headers | {"Vary": "Accept, Authorization"} | response.headers).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except OSError:  # the client went away (e.g. it timed out during a delay)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _drop(self) -> None:
        """Close with a TCP reset and no answer."""
        self.close_connection = True
        with suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.rfile.close()  # the last reference: the socket really closes, with RST


__all__ = ["DEFAULT_CONFIGURATION_TYPES", "PRESIGNED_URL_EXPIRY", "THUMBNAIL_SIZES", "ArchiveEmulator"]
