"""A local HTTP stand-in for the OCS Science Archive, faithful to docs/science-archive-api.md.

It answers like the real archive (Django REST Framework 2.7.2) on the calls an ingester makes, quirks
included: 500 HTML pages where the archive crashes, DRF-shaped 400 bodies, `versions/?md5=` ignoring its
filter, the 301 of `frames` without a slash, hidden frames, the newest extension in every download URL.
Download URLs are built from the frame's fields by ocs_archive, as the archive does, and presigned with
the given S3 client. Tests can inject faults (status, delay, reset) and refuse connections.

    with ArchiveEmulator(s3_client=s3, bucket="archive") as archive:
        requests.post(archive.api_root + "frames/", json=record,
                      headers={"Authorization": f"Token {archive.admin_token}"}, timeout=10)
        archive.inject(status=503)          # the next POST fails
        assert archive.frames()[0]["basename"] == record["basename"]   # inspect before stop()
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import re
import socket
import socketserver
import sqlite3
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
from urllib.parse import parse_qs, urlencode, urlsplit

from ocs_archive.input.file import EmptyFile
from ocs_archive.input.filefactory import FileFactory
from ocs_archive.settings import settings as archive_settings

logger = logging.getLogger(__name__)

DEFAULT_CONFIGURATION_TYPES: tuple[str, ...] = (
    "BIAS",
    "DARK",
    "EXPOSE",
    "SPECTRUM",
    "LAMPFLAT",
    "SKYFLAT",
    "STANDARD",
    "TRAILED",
    "GUIDE",
    "EXPERIMENTAL",
    "CATALOG",
)
THUMBNAIL_SIZES: tuple[str, ...] = ("small", "medium", "large")
PRESIGNED_URL_EXPIRY = 3600 * 48  # seconds, as the archive's Version.url
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 1000

_INT_MAX = 2147483647  # PostgreSQL integer, the bound of PositiveIntegerField
_SMALLINT = (-32768, 32767)
_POLL_INTERVAL = 0.01  # serve_forever poll: bounds how long stop() waits (idle cost is negligible)

# Field lengths of the archive's Frame model (proposal_id and target_name are 200).
_FRAME_TEXT_FIELDS: tuple[tuple[str, int, bool], ...] = (
    # name, max_length, blank allowed (model blank=True)
    ("proposal_id", 200, True),
    ("instrument_id", 64, False),
    ("target_name", 200, True),
    ("site_id", 3, False),
    ("telescope_id", 4, False),
)
_NOT_NULL = "This field may not be null."
_REQUIRED = "This field is required."
_BLANK = "This field may not be blank."

_SERVER_ERROR_PAGE = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n'
    "<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n"
)
_NOT_FOUND_PAGE = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n'
    "<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n"
    "</body>\n</html>\n"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    basename TEXT NOT NULL UNIQUE,
    area TEXT,
    observation_date TEXT,
    observation_day TEXT,
    proposal_id TEXT NOT NULL DEFAULT '',
    instrument_id TEXT NOT NULL DEFAULT '',
    target_name TEXT NOT NULL DEFAULT '',
    reduction_level INTEGER NOT NULL DEFAULT 0,
    site_id TEXT NOT NULL DEFAULT '',
    telescope_id TEXT NOT NULL DEFAULT '',
    exposure_time REAL,
    primary_optical_element TEXT NOT NULL DEFAULT '',
    public_date TEXT,
    configuration_type TEXT NOT NULL DEFAULT '',
    observation_id INTEGER,
    request_id INTEGER,
    headers TEXT,
    created TEXT NOT NULL,
    modified TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    frame_id INTEGER NOT NULL REFERENCES frames(id),
    key TEXT NOT NULL UNIQUE,
    md5 TEXT NOT NULL UNIQUE,
    extension TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS related_frames (
    from_id INTEGER NOT NULL REFERENCES frames(id),
    to_id INTEGER NOT NULL REFERENCES frames(id),
    PRIMARY KEY (from_id, to_id)
);
CREATE TABLE IF NOT EXISTS thumbnails (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    frame_id INTEGER NOT NULL REFERENCES frames(id),
    size TEXT NOT NULL,
    basename TEXT NOT NULL UNIQUE,
    extension TEXT NOT NULL,
    key TEXT NOT NULL,
    created TEXT NOT NULL
);
"""
_FRAME_COLUMNS = (
    "basename",
    "area",
    "observation_date",
    "observation_day",
    "proposal_id",
    "instrument_id",
    "target_name",
    "reduction_level",
    "site_id",
    "telescope_id",
    "exposure_time",
    "primary_optical_element",
    "public_date",
    "configuration_type",
    "observation_id",
    "request_id",
)
# Order of FrameSerializer's fields in a 201 body (write-only headers/related_frame_filenames left out).
_CREATED_KEYS = (
    "id",
    "basename",
    "area",
    "related_frames",
    "version_set",
    "filename",
    "url",
    "reduction_level",
    "observation_day",
    "observation_date",
    "proposal_id",
    "instrument_id",
    "target_name",
    "site_id",
    "telescope_id",
    "exposure_time",
    "primary_optical_element",
    "public_date",
    "configuration_type",
    "observation_id",
    "request_id",
)
# Frame.as_dict() repeats the fields under their old FITS names.
_LEGACY_NAMES = (
    ("DATE_OBS", "observation_date"),
    ("DAY_OBS", "observation_day"),
    ("PROPID", "proposal_id"),
    ("INSTRUME", "instrument_id"),
    ("OBJECT", "target_name"),
    ("RLEVEL", "reduction_level"),
    ("SITEID", "site_id"),
    ("TELID", "telescope_id"),
    ("EXPTIME", "exposure_time"),
    ("FILTER", "primary_optical_element"),
    ("L1PUBDAT", "public_date"),
    ("OBSTYPE", "configuration_type"),
    ("BLKUID", "observation_id"),
    ("REQNUM", "request_id"),
)
_ROUTE = re.compile(r"/(?P<resource>frames|versions|thumbnails)/(?:(?P<pk>[^/.]+)/(?:(?P<action>headers)/)?)?")


# ---------------------------------------------------------------------------------------------------
# Responses


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class _HttpError(Exception):
    """Short-circuits request handling with a finished response."""

    def __init__(self, response: _Response) -> None:
        super().__init__(response.status)
        self.response = response


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    # DRF's JSONRenderer: compact, UTF-8, no ASCII escaping.
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    return _Response(status, body, "application/json", headers or {})


def _detail(status: int, message: str, headers: dict[str, str] | None = None) -> _Response:
    return _json(status, {"detail": message}, headers)


def _html(status: int, page: str) -> _Response:
    return _Response(status, page.encode(), "text/html; charset=utf-8")


def _server_error() -> _HttpError:
    return _HttpError(_html(500, _SERVER_ERROR_PAGE))


def _fault_response(status: int) -> _Response:
    phrase = _phrase(status)
    if status == 500:
        return _html(500, _SERVER_ERROR_PAGE)
    if status >= 500:
        # What a load balancer or nginx in front of the archive answers.
        page = (
            f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n"
        )
        return _html(status, page)
    if status == 429:
        return _detail(429, "Request was throttled. Expected available in 1 second.", {"Retry-After": "1"})
    if status == 408:
        return _detail(408, "Request timed out.")
    return _detail(status, phrase)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# ---------------------------------------------------------------------------------------------------
# DRF-like field parsing: each parser returns the clean value or raises _Invalid with DRF's messages.


class _Invalid(Exception):
    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail


def _parse_char(
    value: Any, *, max_length: int | None = None, allow_blank: bool = False, allow_null: bool = False
) -> Any:
    if value is None:
        if allow_null:
            return None
        raise _Invalid([_NOT_NULL])
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid(["Not a valid string."])
    text = str(value).strip()  # DRF CharField trims whitespace
    if text == "":
        if allow_blank:
            return ""
        raise _Invalid([_BLANK])
    errors = []
    if max_length is not None and len(text) > max_length:
        errors.append(f"Ensure this field has no more than {max_length} characters.")
    if "\x00" in text:
        errors.append("Null characters are not allowed.")
    if errors:
        raise _Invalid(errors)
    return text


def _parse_int(value: Any, *, minimum: int, maximum: int, allow_null: bool) -> int | None:
    if value is None:
        if allow_null:
            return None
        raise _Invalid([_NOT_NULL])
    if isinstance(value, str) and len(value) > 1000:
        raise _Invalid(["String value too large."])
    try:
        # DRF accepts "12", 12.0 and "12.0", not 12.5 nor True.
        number = int(re.sub(r"\.0*\s*$", "", str(value)))
    except ValueError:
        raise _Invalid(["A valid integer is required."]) from None
    if number < minimum:
        raise _Invalid([f"Ensure this value is greater than or equal to {minimum}."])
    if number > maximum:
        raise _Invalid([f"Ensure this value is less than or equal to {maximum}."])
    return number


def _parse_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value) > 1000:
        raise _Invalid(["String value too large."])
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Invalid(["A valid number is required."]) from None
    if not math.isfinite(number):
        raise _Invalid(["A valid number is required."])
    return number


def _parse_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = None
    if isinstance(value, str):
        with suppress(ValueError):
            # Django's parse_datetime tries fromisoformat first (so a bare date is midnight).
            parsed = datetime.fromisoformat(value.strip())
    if parsed is None:
        formats = "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]"
        raise _Invalid([f"Datetime has wrong format. Use one of these formats instead: {formats}."])
    # Naive means UTC (the archive's TIME_ZONE); aware values are converted to UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_DATE_RE = re.compile(r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})$")


def _parse_date(value: Any) -> date:
    if value is None:
        raise _Invalid([_NOT_NULL])
    if isinstance(value, str):
        with suppress(ValueError):
            return date.fromisoformat(value)
        match = _DATE_RE.match(value)
        if match:
            with suppress(ValueError):
                return date(*(int(part) for part in match.groups()))
        with suppress(ValueError):
            return datetime.strptime(value, "%Y%m%d").date()
    raise _Invalid(["Date has wrong format. Use one of these formats instead: YYYY-MM-DD, YYYYMMDD."])


def _parse_choice(value: Any, choices: tuple[str, ...]) -> str:
    if value is None:
        raise _Invalid([_NOT_NULL])
    if isinstance(value, str) and value in choices:
        return value
    raise _Invalid([f'"{value}" is not a valid choice.'])


def _parse_name_list(value: Any) -> list[str]:
    if value is None:
        raise _Invalid([_NOT_NULL])
    if not isinstance(value, list):
        raise _Invalid([f'Expected a list of items but got type "{type(value).__name__}".'])
    names, errors = [], {}
    for index, item in enumerate(value):
        try:
            names.append(_parse_char(item))
        except _Invalid as exc:
            errors[str(index)] = exc.detail
    if errors:
        raise _Invalid(errors)
    return names


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_position(value: Any) -> bool:
    return isinstance(value, list) and len(value) in (2, 3) and all(_is_number(v) for v in value)


def _parse_area(value: Any) -> tuple[dict | None, bool]:
    """(clean GeoJSON, can be saved). GEOS parses any geometry; only the Polygon column rejects others."""
    if value is None:
        return None, True
    invalid = _Invalid([f"Invalid polygon: {value!r}"])
    if not isinstance(value, dict):
        raise invalid
    kind, coordinates = value.get("type"), value.get("coordinates")
    if kind == "Polygon":
        if not isinstance(coordinates, list):
            raise invalid
        rings = []
        for ring in coordinates:
            if not isinstance(ring, list) or len(ring) < 4 or not all(_is_position(p) for p in ring):
                raise invalid
            if ring[0] != ring[-1]:
                raise invalid
            rings.append([[float(v) for v in point] for point in ring])
        return {"type": "Polygon", "coordinates": rings}, True
    if kind == "Point":
        if not _is_position(coordinates):
            raise invalid
        return value, False
    if kind in ("LineString", "MultiPoint", "MultiLineString", "MultiPolygon") and isinstance(coordinates, list):
        return value, False
    if kind == "GeometryCollection" and isinstance(value.get("geometries"), list):
        return value, False
    raise invalid


# ---------------------------------------------------------------------------------------------------
# Representation helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _store_datetime(value: datetime | None) -> str | None:
    # One fixed UTC format so text comparison in SQL orders like time.
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _load_datetime(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _render_datetime(text: str | None) -> str | None:
    """DRF's rendering of an aware UTC datetime: isoformat with Z."""
    value = _load_datetime(text)
    if value is None:
        return None
    rendered = value.isoformat()
    return rendered[:-6] + "Z" if rendered.endswith("+00:00") else rendered


def _filestore_path(filename: str, frame: sqlite3.Row) -> str:
    """The archive's get_file_store_path(frame.filename, frame.get_header_dict()).

    A frame without observation_date or observation_day makes get_header_dict raise AttributeError,
    which DRF turns into a missing `url` field; other ocs_archive errors are 500s in the archive.
    """
    observation_date = _load_datetime(frame["observation_date"])
    if observation_date is None or frame["observation_day"] is None:
        raise AttributeError("'NoneType' object has no attribute 'isoformat'")
    s = archive_settings
    metadata = {
        s.OBSERVATION_DATE_KEY: observation_date.isoformat(),
        s.OBSERVATION_DAY_KEY: date.fromisoformat(frame["observation_day"]).strftime("%Y%m%d"),
        s.REDUCTION_LEVEL_KEY: frame["reduction_level"],
        s.INSTRUMENT_ID_KEY: frame["instrument_id"],
        s.EXPOSURE_TIME_KEY: frame["exposure_time"],
        s.SITE_ID_KEY: frame["site_id"],
        s.TELESCOPE_ID_KEY: frame["telescope_id"],
        s.OBSERVATION_ID_KEY: frame["observation_id"],
        s.PRIMARY_OPTICAL_ELEMENT_KEY: frame["primary_optical_element"],
        s.TARGET_NAME_KEY: frame["target_name"],
        s.REQUEST_ID_KEY: frame["request_id"],
        s.CONFIGURATION_TYPE_KEY: frame["configuration_type"],
        s.PROPOSAL_ID_KEY: frame["proposal_id"],
        s.PUBLIC_DATE_KEY: _load_datetime(frame["public_date"]),
    }
    empty_file = EmptyFile(filename)
    data_file_class = FileFactory.get_datafile_class_for_extension(empty_file.extension)
    return data_file_class(empty_file, metadata, {}, {}).get_filestore_path()


@dataclass
class _Fault:
    status: int | None
    remaining: int
    method: str | None
    path_prefix: str
    delay: float
    reset: bool

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return path.lstrip("/").startswith(self.path_prefix)


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: Any
    body: bytes
    host: str


# ---------------------------------------------------------------------------------------------------
# The emulator


class ArchiveEmulator:
    """The Science Archive API on a loopback port, backed by SQLite.

    Tokens: `admin_token` is a superuser (writes, versions/), `user_token` an ordinary user. Reads of
    frames/ are open to anyone, as in the archive (anonymous and user tokens see public frames only).
    """

    def __init__(
        self,
        *,
        admin_token: str = "local-admin-token",
        user_token: str = "local-user-token",
        db_path: str = ":memory:",
        s3_client: Any = None,
        bucket: str | None = None,
        configuration_types: tuple[str, ...] = DEFAULT_CONFIGURATION_TYPES,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        host = "127.0.0.1" if host == "localhost" else host
        if not ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).version != 4:
            raise ValueError(f"the archive emulator binds to IPv4 loopback only, not {host!r}")
        self.admin_token = admin_token
        self.user_token = user_token
        self.db_path = db_path
        self.s3_client = s3_client
        self.bucket = bucket
        self.configuration_types = tuple(configuration_types)
        self.host = host
        self._port = port
        # (method, path with query, status); status None when the connection was dropped.
        self.requests_seen: list[tuple[str, str, int | None]] = []
        self._db_lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._faults: list[_Fault] = []
        self._faults_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._connections_lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> ArchiveEmulator:
        """Open the database and serve on `api_root` from a background thread (idempotent)."""
        with self._state_lock:
            if self._started:
                return self
            self._open_db()
            self._stopping.clear()
            try:
                self._open_listener()
            except BaseException:
                self._close_db()
                raise
            self._started = True
        return self

    def stop(self) -> None:
        """Stop serving, end open connections and close the database (inspect before stopping)."""
        with self._state_lock:
            if not self._started:
                return
            self._started = False
            self._stopping.set()  # wakes delayed handlers
            self._close_listener()
            with self._connections_lock:
                threads = list(self._handler_threads)
            for thread in threads:
                thread.join(timeout=2)
            self._close_db()

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
        """Close the listening socket (clients get ECONNREFUSED); reopen it on the same port on exit."""
        with self._state_lock:
            if not self._started:
                raise RuntimeError("the emulator is not running")
            self._close_listener()
        try:
            yield
        finally:
            with self._state_lock:
                if self._started:
                    self._open_listener()

    def _open_listener(self) -> None:
        server = _Server((self.host, self._port), self)
        self._port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"archive-emulator-{self._port}",
            daemon=True,
        )
        self._server, self._serve_thread = server, thread
        thread.start()

    def _close_listener(self) -> None:
        server, thread = self._server, self._serve_thread
        self._server = self._serve_thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()
        # Kept-alive connections would still be answered: end them too.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)
            self._handler_threads.add(threading.current_thread())

    def _untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)
            self._handler_threads.discard(threading.current_thread())

    # -- database -------------------------------------------------------------------------------------

    def _open_db(self) -> None:
        with self._db_lock:
            if self._db is None:
                db = sqlite3.connect(self.db_path, check_same_thread=False)
                db.row_factory = sqlite3.Row
                db.executescript(_SCHEMA)
                self._db = db

    def _close_db(self) -> None:
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the emulator's database is closed (start it first)")
        return self._db

    # -- inspection for tests -------------------------------------------------------------------------

    def frames(self) -> list[dict[str, Any]]:
        """Every stored frame, hidden ones included (`hidden`), oldest first, with headers and versions."""
        with self._db_lock:
            rows = self._conn.execute("SELECT * FROM frames ORDER BY id").fetchall()
            result = []
            for row in rows:
                versions = self._versions_of(row["id"])
                item = {name: row[name] for name in ("id", *_FRAME_COLUMNS)}
                item["area"] = json.loads(row["area"]) if row["area"] is not None else None
                item["headers"] = json.loads(row["headers"]) if row["headers"] is not None else None
                item["related_frames"] = self._related_ids(row["id"])
                item["version_set"] = [
                    {k: v[k] for k in ("id", "key", "md5", "extension", "created")} for v in versions
                ]
                item["hidden"] = not versions or row["observation_date"] is None
                result.append(item)
            return result

    def versions(self) -> list[dict[str, Any]]:
        """Every stored version, oldest first, with its frame's id and basename."""
        with self._db_lock:
            rows = self._conn.execute(
                "SELECT v.id, v.frame_id, f.basename, v.key, v.md5, v.extension, v.created "
                "FROM versions v JOIN frames f ON f.id = v.frame_id ORDER BY v.id"
            ).fetchall()
            return [dict(row) for row in rows]

    def thumbnails(self) -> list[dict[str, Any]]:
        with self._db_lock:
            rows = self._conn.execute(
                "SELECT t.id, t.frame_id, f.basename AS frame_basename, t.size, t.basename, t.key, "
                "t.extension, t.created FROM thumbnails t JOIN frames f ON f.id = t.frame_id ORDER BY t.id"
            ).fetchall()
            return [dict(row) for row in rows]

    # -- fault injection ------------------------------------------------------------------------------

    def inject(
        self,
        *,
        status: int | None = None,
        count: int = 1,
        method: str | None = "POST",
        path_prefix: str = "",
        delay: float = 0.0,
        reset: bool = False,
    ) -> None:
        """Make the next `count` matching requests fail.

        A request matches when its method equals `method` (None: any) and its path relative to the API
        root starts with `path_prefix` (e.g. "frames/"). It then waits `delay` seconds, and either drops
        the connection (`reset`), answers `status` (an HTML page for 5xx, DRF JSON otherwise), or, with
        neither, is answered normally. Faults are consumed in the order they were injected.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        if delay < 0:
            raise ValueError("delay must not be negative")
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status}")
        if status is not None and reset:
            raise ValueError("a dropped connection has no status")
        if status is None and not reset and delay == 0:
            raise ValueError("inject a status, a delay or a reset")
        fault = _Fault(status, count, method.upper() if method else None, path_prefix.lstrip("/"), delay, reset)
        with self._faults_lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many injected failures are still to be served."""
        with self._faults_lock:
            return sum(fault.remaining for fault in self._faults)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, method: str, target: str, status: int | None) -> None:
        with self._faults_lock:
            self.requests_seen.append((method, target, status))

    # -- request handling -----------------------------------------------------------------------------

    def _dispatch(self, request: _Request) -> _Response:
        try:
            return self._route(request)
        except _HttpError as exc:
            return exc.response
        except Exception:
            logger.exception("archive emulator: unhandled error on %s %s", request.method, request.path)
            return _html(500, _SERVER_ERROR_PAGE)

    def _route(self, request: _Request) -> _Response:
        path = request.path
        if path == "/":
            self._authenticate(request)
            if request.method not in ("GET", "HEAD"):
                return self._method_not_allowed(request)
            return _json(200, {name: f"http://{request.host}/{name}/" for name in ("frames", "versions")})
        match = _ROUTE.fullmatch(path)
        if match is None:
            # Django's CommonMiddleware (APPEND_SLASH) redirects before any view or authentication.
            if not path.endswith("/") and _ROUTE.fullmatch(path + "/"):
                location = path + "/" + (f"?{request.query}" if request.query else "")
                return _Response(301, b"", "text/html; charset=utf-8", {"Location": location})
            return _html(404, _NOT_FOUND_PAGE)
        role = self._authenticate(request)
        resource, pk, action = match["resource"], match["pk"], match["action"]
        read = request.method in ("GET", "HEAD", "OPTIONS")
        if resource == "versions" or not read:
            self._require(role, admin=True)
        if request.method not in ("GET", "HEAD") and not (request.method == "POST" and pk is None):
            return self._method_not_allowed(request)
        if resource == "versions" and request.method == "POST":
            return self._method_not_allowed(request)
        if request.method == "POST":
            data = self._parse_body(request)
            if resource == "frames":
                return self._create_frame(data)
            return self._create_thumbnail(data)
        if resource == "frames":
            if pk is None:
                return self._list_frames(request, role)
            return self._frame_detail(pk, role, headers_only=action == "headers")
        if action is not None:
            return _html(404, _NOT_FOUND_PAGE)
        if resource == "versions":
            return self._list_versions(request) if pk is None else self._version_detail(pk)
        return self._list_thumbnails(request) if pk is None else self._thumbnail_detail(pk)

    @staticmethod
    def _method_not_allowed(request: _Request) -> _Response:
        return _detail(405, f'Method "{request.method}" not allowed.')

    def _authenticate(self, request: _Request) -> str | None:
        """DRF TokenAuthentication: returns "admin", "user" or None (anonymous)."""
        header = request.headers.get("Authorization")
        if not header:
            return None
        parts = header.split()
        if not parts or parts[0].lower() != "token":
            return None  # another scheme: not this authenticator's business, so anonymous
        unauthorized = {"WWW-Authenticate": "Token"}
        if len(parts) == 1:
            raise _HttpError(_detail(401, "Invalid token header. No credentials provided.", unauthorized))
        if len(parts) > 2:
            message = "Invalid token header. Token string should not contain spaces."
            raise _HttpError(_detail(401, message, unauthorized))
        token = parts[1]
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return "admin"
        if hmac.compare_digest(token.encode(), self.user_token.encode()):
            return "user"
        raise _HttpError(_detail(401, "Invalid token.", unauthorized))

    @staticmethod
    def _require(role: str | None, *, admin: bool) -> None:
        if role is None:
            message = "Authentication credentials were not provided."
            raise _HttpError(_detail(401, message, {"WWW-Authenticate": "Token"}))
        if admin and role != "admin":
            raise _HttpError(_detail(403, "You do not have permission to perform this action."))

    @staticmethod
    def _parse_body(request: _Request) -> Any:
        content_type = request.headers.get("Content-Type", "")
        media_type = content_type.split(";")[0].strip().lower()
        if not request.body:
            return {}
        if media_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            # The archive's create() does len(request.data.get("version_set")) on a QueryDict: a crash.
            raise _server_error()
        if media_type != "application/json":
            raise _HttpError(_detail(415, f'Unsupported media type "{content_type}" in request.'))

        def reject_constant(name: str) -> Any:
            raise ValueError("Out of range float values are not JSON compliant")

        try:
            return json.loads(request.body.decode("utf-8"), parse_constant=reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _HttpError(_detail(400, f"JSON parse error - {exc}")) from None

    # -- frames: create -------------------------------------------------------------------------------

    def _create_frame(self, data: Any) -> _Response:
        # The archive's view reads version_set before validating anything; these inputs crash it.
        if not isinstance(data, dict):
            raise _server_error()
        version_set = data.get("version_set")
        if version_set is None or isinstance(version_set, bool | int | float):
            raise _server_error()
        if len(version_set) > 0 and (not isinstance(version_set, list) or not isinstance(version_set[0], dict)):
            raise _server_error()
        with self._db_lock:
            validated, errors, saveable = self._validate_frame(data)
            if errors:
                return _json(400, errors)
            if not saveable:
                raise _server_error()
            frame_id = self._save_frame(validated)
            # The response is rendered after the commit: a failure here is a 500 with the frame saved.
            return _json(201, self._created_body(frame_id))

    def _validate_frame(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """(validated data, DRF errors, saveable). Not saveable: valid for DRF but the database refuses."""
        validated: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        saveable = True

        def check(name: str, parse: Callable[[Any], Any], *, required: bool) -> None:
            if name not in data:
                if required:
                    errors[name] = [_REQUIRED]
                return
            try:
                validated[name] = parse(data[name])
            except _Invalid as exc:
                errors[name] = exc.detail

        # In FrameSerializer's field order, so the error body lists fields as the archive does.
        check("basename", _parse_char, required=True)
        if "area" not in data:
            errors["area"] = [_REQUIRED]
        else:
            try:
                validated["area"], saveable = _parse_area(data["area"])
            except _Invalid as exc:
                errors["area"] = exc.detail
        if "related_frames" in data:
            # Writable in the serializer, but update_or_create cannot assign a many-to-many: a crash.
            try:
                self._check_related_pks(data["related_frames"])
                saveable = False
            except _Invalid as exc:
                errors["related_frames"] = exc.detail
        try:
            validated["version_set"] = self._validate_versions(data["version_set"])
        except _Invalid as exc:
            errors["version_set"] = exc.detail
        if "headers" not in data:
            errors["headers"] = [_REQUIRED]
        elif data["headers"] is None:
            errors["headers"] = [_NOT_NULL]
        else:
            validated["headers"] = data["headers"]
        small_int = partial(_parse_int, minimum=_SMALLINT[0], maximum=_SMALLINT[1], allow_null=False)
        check("reduction_level", small_int, required=False)
        check("observation_day", _parse_date, required=True)
        check("observation_date", _parse_datetime, required=False)
        for name, max_length, allow_blank in _FRAME_TEXT_FIELDS:
            check(name, partial(_parse_char, max_length=max_length, allow_blank=allow_blank), required=False)
        check("exposure_time", _parse_float, required=False)
        check("primary_optical_element", partial(_parse_char, max_length=100, allow_blank=True), required=False)
        check("public_date", _parse_datetime, required=False)
        check("configuration_type", partial(_parse_choice, choices=self.configuration_types), required=True)
        positive_int = partial(_parse_int, minimum=0, maximum=_INT_MAX, allow_null=True)
        for name in ("observation_id", "request_id"):
            check(name, positive_int, required=False)
        check("related_frame_filenames", _parse_name_list, required=True)

        if not errors:
            basenames = [validated["basename"], *validated["related_frame_filenames"]]
            if any(len(name) > 1000 for name in basenames):
                saveable = False  # CharField(max_length=1000) in the database only
            keys = [v["key"] for v in validated["version_set"]]
            md5s = [v["md5"] for v in validated["version_set"]]
            if len(set(keys)) < len(keys) or len(set(md5s)) < len(md5s):
                saveable = False  # UniqueValidator only looks at stored rows; the insert then fails
        return validated, errors, saveable

    def _check_related_pks(self, value: Any) -> None:
        if not isinstance(value, list):
            raise _Invalid([f'Expected a list of items but got type "{type(value).__name__}".'])
        for pk in value:
            if isinstance(pk, bool) or not isinstance(pk, int | str):
                raise _Invalid([f"Incorrect type. Expected pk value, received {type(pk).__name__}."])
            found = None
            if str(pk).isdigit():
                found = self._conn.execute("SELECT 1 FROM frames WHERE id = ?", (int(pk),)).fetchone()
            if found is None:
                raise _Invalid([f'Invalid pk "{pk}" - object does not exist.'])

    def _validate_versions(self, value: Any) -> list[dict[str, str]]:
        if not isinstance(value, list):
            message = f'Expected a list of items but got type "{type(value).__name__}".'
            raise _Invalid({"non_field_errors": [message]})
        versions: list[dict[str, str]] = []
        item_errors: list[dict[str, Any]] = []
        for item in value:
            if item is None:
                item_errors.append({"non_field_errors": [_NOT_NULL]})
                continue
            if not isinstance(item, dict):
                message = f"Invalid data. Expected a dictionary, but got {type(item).__name__}."
                item_errors.append({"non_field_errors": [message]})
                continue
            clean: dict[str, str] = {}
            errors: dict[str, Any] = {}
            for name, max_length in (("key", 32), ("md5", 32), ("extension", 20)):
                if name not in item:
                    errors[name] = [_REQUIRED]
                    continue
                try:
                    clean[name] = _parse_char(item[name], max_length=max_length)
                except _Invalid as exc:
                    errors[name] = exc.detail
                    continue
                if name != "extension":
                    taken = self._conn.execute(f"SELECT 1 FROM versions WHERE {name} = ?", (clean[name],)).fetchone()
                    if taken is not None:
                        errors[name] = [f"version with this {name} already exists."]
            item_errors.append(errors)
            versions.append(clean)
        if any(item_errors):
            raise _Invalid(item_errors)
        return versions

    def _save_frame(self, validated: dict[str, Any]) -> int:
        now = _store_datetime(_now())
        row = {name: validated[name] for name in _FRAME_COLUMNS if name in validated}
        if "area" in row:
            row["area"] = json.dumps(row["area"]) if row["area"] is not None else None
        if "observation_day" in row:
            row["observation_day"] = row["observation_day"].isoformat()
        for name in ("observation_date", "public_date"):
            if name in row:
                row[name] = _store_datetime(row[name])
        db = self._conn
        with db:  # one transaction, like the serializer's transaction.atomic()
            existing = db.execute("SELECT id FROM frames WHERE basename = ?", (row["basename"],)).fetchone()
            if existing is None:
                columns = [*row, "headers", "created", "modified"]
                values = [*row.values(), json.dumps(validated["headers"]), now, now]
                cursor = db.execute(
                    f"INSERT INTO frames ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                    values,
                )
                frame_id = int(cursor.lastrowid)
            else:
                # update_or_create: only the fields sent are changed.
                frame_id = existing["id"]
                assignments = [*(f"{name} = ?" for name in row), "headers = ?", "modified = ?"]
                db.execute(
                    f"UPDATE frames SET {', '.join(assignments)} WHERE id = ?",
                    [*row.values(), json.dumps(validated["headers"]), now, frame_id],
                )
            for version in validated["version_set"]:
                db.execute(
                    "INSERT INTO versions (frame_id, key, md5, extension, created) VALUES (?, ?, ?, ?, ?)",
                    (frame_id, version["key"], version["md5"], version["extension"], _store_datetime(_now())),
                )
            for name in validated["related_frame_filenames"]:
                if not name or name == row["basename"]:
                    continue
                related = db.execute("SELECT id FROM frames WHERE basename = ?", (name,)).fetchone()
                if related is None:
                    # A hidden placeholder: no versions, no observation date.
                    cursor = db.execute(
                        "INSERT INTO frames (basename, created, modified) VALUES (?, ?, ?)", (name, now, now)
                    )
                    related_id = int(cursor.lastrowid)
                else:
                    related_id = related["id"]
                # ManyToManyField('self') is symmetrical.
                db.executemany(
                    "INSERT OR IGNORE INTO related_frames (from_id, to_id) VALUES (?, ?)",
                    [(frame_id, related_id), (related_id, frame_id)],
                )
        return frame_id

    # -- frames: representation -----------------------------------------------------------------------

    def _frame_row(self, frame_id: int) -> sqlite3.Row:
        return self._conn.execute("SELECT * FROM frames WHERE id = ?", (frame_id,)).fetchone()

    def _versions_of(self, frame_id: int) -> list[sqlite3.Row]:
        return self._conn.execute(
            "SELECT * FROM versions WHERE frame_id = ? ORDER BY created DESC, id DESC", (frame_id,)
        ).fetchall()

    def _related_ids(self, frame_id: int) -> list[int]:
        rows = self._conn.execute(
            "SELECT to_id FROM related_frames WHERE from_id = ? ORDER BY to_id", (frame_id,)
        ).fetchall()
        return [row["to_id"] for row in rows]

    def _download_url(self, frame: sqlite3.Row, filename: str, version_key: str) -> str:
        path = _filestore_path(filename, frame)
        if self.s3_client is None or not self.bucket:
            return ""  # ocs_archive's dummy file store
        return self.s3_client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": path, "VersionId": version_key},
            ExpiresIn=PRESIGNED_URL_EXPIRY,
        )

    def _serialized_version(self, version: sqlite3.Row, frame: sqlite3.Row, filename: str | None) -> dict:
        """VersionSerializer: id, created, key, md5, extension, url (url left out when it cannot be built)."""
        item: dict[str, Any] = {
            "id": version["id"],
            "created": _render_datetime(version["created"]),
            "key": version["key"],
            "md5": version["md5"],
            "extension": version["extension"],
        }
        with suppress(AttributeError):  # DRF skips a read-only field whose attribute raises AttributeError
            if filename is None:
                raise AttributeError("frame without versions")
            item["url"] = self._download_url(frame, filename, version["key"])
        return item

    def _created_body(self, frame_id: int) -> dict[str, Any]:
        frame = self._frame_row(frame_id)
        versions = self._versions_of(frame_id)
        # Frame.filename and every Version.url use the newest version's extension (the archive's quirk).
        filename = frame["basename"] + versions[0]["extension"] if versions else None
        values: dict[str, Any] = self._frame_fields(frame)
        values["id"] = frame["id"]
        values["basename"] = frame["basename"]
        values["area"] = json.loads(frame["area"]) if frame["area"] is not None else None
        values["related_frames"] = self._related_ids(frame_id)
        values["version_set"] = [self._serialized_version(v, frame, filename) for v in versions]
        if filename is not None:
            values["filename"] = filename
            with suppress(AttributeError):
                values["url"] = self._download_url(frame, filename, versions[0]["key"])
        return {key: values[key] for key in _CREATED_KEYS if key in values}

    @staticmethod
    def _frame_fields(frame: sqlite3.Row) -> dict[str, Any]:
        return {
            "reduction_level": frame["reduction_level"],
            "observation_day": frame["observation_day"],
            "observation_date": _render_datetime(frame["observation_date"]),
            "proposal_id": frame["proposal_id"],
            "instrument_id": frame["instrument_id"],
            "target_name": frame["target_name"],
            "site_id": frame["site_id"],
            "telescope_id": frame["telescope_id"],
            "exposure_time": frame["exposure_time"],
            "primary_optical_element": frame["primary_optical_element"],
            "public_date": _render_datetime(frame["public_date"]),
            "configuration_type": frame["configuration_type"],
            "observation_id": frame["observation_id"],
            "request_id": frame["request_id"],
        }

    def _frame_as_dict(self, frame: sqlite3.Row) -> dict[str, Any]:
        """Frame.as_dict(), the shape of list and detail results."""
        versions = self._versions_of(frame["id"])
        filename = frame["basename"] + versions[0]["extension"]
        item: dict[str, Any] = {"id": frame["id"], "basename": frame["basename"], **self._frame_fields(frame)}
        item["version_set"] = [
            {
                "id": v["id"],
                "key": v["key"],
                "md5": v["md5"],
                "extension": v["extension"],
                "url": self._download_url(frame, filename, v["key"]),
                "created": _render_datetime(v["created"]),
            }
            for v in versions
        ]
        item["url"] = item["version_set"][0]["url"]
        item["filename"] = filename
        for legacy, name in _LEGACY_NAMES:
            item[legacy] = item[name]
        if frame["area"] is not None:  # model_to_dict leaves area out; as_dict adds it back only when set
            item["area"] = json.loads(frame["area"])
        item["related_frames"] = self._related_ids(frame["id"])
        return item

    # -- frames: reads --------------------------------------------------------------------------------

    def _visible_frames_sql(self, role: str | None) -> tuple[str, list[Any]]:
        # Frames without an observation date or without versions are hidden everywhere.
        where = [
            "f.observation_date IS NOT NULL",
            "EXISTS (SELECT 1 FROM versions v WHERE v.frame_id = f.id)",
        ]
        params: list[Any] = []
        if role != "admin":
            # Non-superusers see public frames (this emulator's user belongs to no proposal).
            where.append("f.public_date IS NOT NULL AND f.public_date < ?")
            params.append(_store_datetime(_now()))
        return " AND ".join(where), params

    def _list_frames(self, request: _Request, role: str | None) -> _Response:
        where, params = self._visible_frames_sql(role)
        query = parse_qs(request.query, keep_blank_values=True)
        exact = (query.get("basename_exact") or [""])[-1]
        if exact:
            where += " AND f.basename = ?"
            params.append(exact)
        contains = (query.get("basename") or [""])[-1]
        if contains:
            where += " AND instr(lower(f.basename), lower(?)) > 0"
            params.append(contains)
        with self._db_lock:
            total = self._conn.execute(f"SELECT count(*) FROM frames f WHERE {where}", params).fetchone()[0]
            limit, offset = _page_bounds(query)
            rows = self._conn.execute(
                f"SELECT * FROM frames f WHERE {where} ORDER BY f.observation_date DESC, f.id DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            results = [self._frame_as_dict(row) for row in rows]
        return _json(200, _page(request, total, limit, offset, results))

    def _visible_frame(self, pk: str, role: str | None) -> sqlite3.Row:
        if not pk.isdigit():
            raise _HttpError(_detail(404, "Not found."))
        where, params = self._visible_frames_sql(role)
        row = self._conn.execute(f"SELECT * FROM frames f WHERE {where} AND f.id = ?", [*params, int(pk)]).fetchone()
        if row is None:
            raise _HttpError(_detail(404, "Not found."))
        return row

    def _frame_detail(self, pk: str, role: str | None, *, headers_only: bool) -> _Response:
        with self._db_lock:
            frame = self._visible_frame(pk, role)
            if headers_only:
                return _json(200, {"data": json.loads(frame["headers"] or "{}")})
            return _json(200, self._frame_as_dict(frame))

    # -- versions -------------------------------------------------------------------------------------

    def _list_versions(self, request: _Request) -> _Response:
        # The archive's VersionViewSet declares `filter_fields`, which django-filter 25 no longer reads:
        # ?md5= (and every other filter) is ignored and all versions come back.
        return self._paged(request, "versions", "created DESC, id DESC", self._version_for_api)

    def _paged(
        self, request: _Request, table: str, order: str, serialize: Callable[[sqlite3.Row], dict[str, Any]]
    ) -> _Response:
        """A DRF limit/offset page of every row of `table` (a constant name, never user input)."""
        limit, offset = _page_bounds(parse_qs(request.query, keep_blank_values=True))
        with self._db_lock:
            total = self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            rows = self._conn.execute(
                f"SELECT * FROM {table} ORDER BY {order} LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
            results = [serialize(row) for row in rows]
        return _json(200, _page(request, total, limit, offset, results))

    def _version_for_api(self, version: sqlite3.Row) -> dict[str, Any]:
        frame = self._frame_row(version["frame_id"])
        newest = self._versions_of(frame["id"])[0]
        return self._serialized_version(version, frame, frame["basename"] + newest["extension"])

    def _version_detail(self, pk: str) -> _Response:
        with self._db_lock:
            row = None
            if pk.isdigit():
                row = self._conn.execute("SELECT * FROM versions WHERE id = ?", (int(pk),)).fetchone()
            if row is None:
                return _detail(404, "Not found.")
            return _json(200, self._version_for_api(row))

    # -- thumbnails -----------------------------------------------------------------------------------

    def _create_thumbnail(self, data: Any) -> _Response:
        if not isinstance(data, dict):
            raise _server_error()
        # The reference ingester sends key and extension inside version_set, like a frame.
        version_set = data.get("version_set")
        first = version_set[0] if isinstance(version_set, list) and version_set else None
        source = dict(first) if isinstance(first, dict) else {}
        source.update({name: data[name] for name in ("key", "extension") if name in data})
        errors: dict[str, Any] = {}
        clean: dict[str, Any] = {}

        def check(name: str, values: dict[str, Any], parse: Callable[[Any], Any]) -> None:
            if name not in values:
                errors[name] = [_REQUIRED]
                return
            try:
                clean[name] = parse(values[name])
            except _Invalid as exc:
                errors[name] = exc.detail

        with self._db_lock:
            check("frame_basename", data, _parse_char)
            check("size", data, partial(_parse_choice, choices=THUMBNAIL_SIZES))
            check("basename", data, partial(_parse_char, max_length=1000))
            check("key", source, partial(_parse_char, max_length=32))
            check("extension", source, partial(_parse_char, max_length=20))
            db = self._conn
            frame = None
            if "frame_basename" in clean:
                frame = db.execute("SELECT * FROM frames WHERE basename = ?", (clean["frame_basename"],)).fetchone()
                if frame is None:
                    errors["frame_basename"] = [f'Frame with basename "{clean["frame_basename"]}" does not exist.']
            # The real endpoint is an upsert by thumbnail basename: the newest key wins; a key is unique.
            if (
                "key" in clean
                and db.execute(
                    "SELECT 1 FROM thumbnails WHERE key = ? AND basename != ?", (clean["key"], clean.get("basename"))
                ).fetchone()
            ):
                errors["key"] = ["thumbnail with this key already exists."]
            if errors:
                return _json(400, errors)
            assert frame is not None
            values = (frame["id"], clean["size"], clean["extension"], clean["key"], _store_datetime(_now()))
            with db:
                if db.execute("SELECT 1 FROM thumbnails WHERE basename = ?", (clean["basename"],)).fetchone():
                    db.execute(
                        "UPDATE thumbnails SET frame_id = ?, size = ?, extension = ?, key = ?, created = ? "
                        "WHERE basename = ?",
                        (*values, clean["basename"]),
                    )
                else:
                    db.execute(
                        "INSERT INTO thumbnails (frame_id, size, extension, key, created, basename) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (*values, clean["basename"]),
                    )
            row = db.execute("SELECT * FROM thumbnails WHERE basename = ?", (clean["basename"],)).fetchone()
            body = self._thumbnail_body(row, data)
            # The real 201 body: {frame, size, basename, url, key, extension}, no id.
            return _json(201, {name: body[name] for name in ("frame", "size", "basename", "url", "key", "extension")})

    def _thumbnail_body(self, row: sqlite3.Row, data: dict[str, Any] | None = None) -> dict[str, Any]:
        frame = self._frame_row(row["frame_id"])
        data = data or {}
        # ThumbnailFile's path: SITEID/INSTRUME/DAY-OBS/thumbnails/<basename><extension>.
        site = data.get("site_id") or frame["site_id"]
        instrument = data.get("instrument_id") or frame["instrument_id"]
        day = data.get("observation_day") or frame["observation_day"] or ""
        with suppress(_Invalid):
            day = _parse_date(day).strftime("%Y%m%d")
        path = f"{site}/{instrument}/{day}/thumbnails/{row['basename']}{row['extension']}"
        url = ""
        if self.s3_client is not None and self.bucket:
            url = self.s3_client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": path, "VersionId": row["key"]},
                ExpiresIn=PRESIGNED_URL_EXPIRY,
            )
        return {
            "id": row["id"],
            "frame": row["frame_id"],
            "frame_basename": frame["basename"],
            "size": row["size"],
            "basename": row["basename"],
            "extension": row["extension"],
            "key": row["key"],
            "url": url,
        }

    def _list_thumbnails(self, request: _Request) -> _Response:
        return self._paged(request, "thumbnails", "id DESC", self._thumbnail_body)

    def _thumbnail_detail(self, pk: str) -> _Response:
        with self._db_lock:
            row = None
            if pk.isdigit():
                row = self._conn.execute("SELECT * FROM thumbnails WHERE id = ?", (int(pk),)).fetchone()
            if row is None:
                return _detail(404, "Not found.")
            return _json(200, self._thumbnail_body(row))


# ---------------------------------------------------------------------------------------------------
# Pagination (DRF LimitOffsetPagination)


def _positive_int(raw: str, *, strict: bool, cutoff: int | None = None) -> int:
    value = int(raw)
    if value < 0 or (value == 0 and strict):
        raise ValueError(raw)
    return min(value, cutoff) if cutoff else value


def _page_bounds(query: dict[str, list[str]]) -> tuple[int, int]:
    try:
        limit = _positive_int(query["limit"][-1], strict=True, cutoff=MAX_PAGE_LIMIT)
    except (KeyError, ValueError):
        limit = DEFAULT_PAGE_LIMIT
    try:
        offset = _positive_int(query["offset"][-1], strict=False)
    except (KeyError, ValueError):
        offset = 0
    return limit, offset


def _page(request: _Request, count: int, limit: int, offset: int, results: list[Any]) -> dict[str, Any]:
    base = f"http://{request.host}{request.path}"
    query = parse_qs(request.query, keep_blank_values=True)

    def link(new_offset: int | None) -> str:
        params = {**query, "limit": [str(limit)]}
        params.pop("offset", None)
        if new_offset:
            params["offset"] = [str(new_offset)]
        return f"{base}?{urlencode(sorted(params.items()), doseq=True)}"

    next_link = link(offset + limit) if offset + limit < count else None
    previous_link = None
    if offset > 0:
        previous_link = link(offset - limit if offset - limit > 0 else None)
    return {
        "count": count,
        "next": next_link,
        "previous": previous_link,
        "results": results,
        "count_estimated": False,
    }


# ---------------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() ends and joins handler threads itself
    allow_reuse_address = True  # reopening on the same port after refusing_connections()
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], emulator: ArchiveEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("archive emulator: connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn behind nginx
    server_version = "ArchiveEmulator/1.0"
    timeout = 60  # an idle kept-alive connection ends after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm holds the body
        # until the client's delayed ACK (~40 ms) on every kept-alive request. A real archive does not.
        with suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._untrack(self.connection)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # the request line only, never headers
        logger.debug("archive emulator: " + format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            return None
        return self.rfile.read(size) if size > 0 else b""

    def _handle(self, method: str) -> None:
        emulator = self.server.emulator
        target = self.path
        split = urlsplit(target)
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        # Each request is recorded before it is answered, so a client sees it in requests_seen at once.
        if body is None:
            self.close_connection = True
            emulator._record(method, target, 400)
            self._send(method, _Response(400, b"Bad Request", "text/plain"))
            return
        fault = emulator._take_fault(method, split.path)
        if fault is not None and fault.delay and emulator._stopping.wait(fault.delay):
            self._drop()  # stopping: give up on this request
            return
        if fault is not None and fault.reset:
            emulator._record(method, target, None)
            self._drop()
            return
        if fault is not None and fault.status is not None:
            response = _fault_response(fault.status)
        else:
            host = self.headers.get("Host") or f"{emulator.host}:{emulator.port}"
            request = _Request(method, split.path or "/", split.query, self.headers, body, host)
            response = emulator._dispatch(request)
        emulator._record(method, target, response.status)
        self._send(method, response)

    def _send(self, method: str, response: _Response) -> None:
        try:
            self.send_response(response.status, _phrase(response.status))
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Vary", "Accept, Authorization")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:  # the client went away (e.g. timed out during a delay fault)
            self.close_connection = True

    def _drop(self) -> None:
        """Close with a TCP reset and no answer."""
        self.close_connection = True
        with suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with suppress(OSError):
            self.connection.close()
            self.rfile.close()  # releases the last reference: the socket really closes, with RST


__all__ = ["DEFAULT_CONFIGURATION_TYPES", "PRESIGNED_URL_EXPIRY", "THUMBNAIL_SIZES", "ArchiveEmulator"]
