"""Science Archive REST client: duplicate lookup and registration, with timeouts and error classes.

Classification (science-archive-api.md): 201 with an id is the only success of a POST; 400 duplicate
md5 means another delivery already registered the bytes; other 4xx are permanent except 408/429;
5xx, timeouts and refused connections are transient. The token goes only into the Authorization header
and is never part of an error message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import requests

from lambda_ingest.errors import ArchiveRejectedError, ArchiveUnavailableError, ConfigurationError
from lambda_ingest.settings import Settings

_RETRYABLE_4XX = {408, 429}
_NOT_HANDLED = {503, 429, 408}  # statuses that say the archive did not act on the request


class DuplicateMd5(Exception):
    """The archive already holds a version with this md5 (a 400 on POST)."""


@dataclass(frozen=True)
class ExistingVersion:
    frame_id: int | None
    key: str
    md5: str
    extension: str
    url: str | None


class ArchiveClient:
    def __init__(self, settings: Settings, token: str) -> None:
        if not token:
            raise ConfigurationError("no archive token: set AUTH_TOKEN or AUTH_TOKEN_SECRET_ARN")
        self.api_root = settings.archive_api_root
        self._timeout = (settings.http_connect_timeout, settings.http_read_timeout)
        self._headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        self._local = threading.local()  # requests.Session is not thread-safe; one per thread

    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self._headers)
            self._local.session = session
        return session

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.api_root + path
        try:
            # Redirects are not followed: the archive's 301 for a missing slash turns a POST into a GET.
            return self._session.request(method, url, timeout=self._timeout, allow_redirects=False, **kwargs)
        except requests.ConnectTimeout:
            raise ArchiveUnavailableError(
                f"{method} {path}: archive unreachable (connect timeout); will retry"
            ) from None
        except requests.Timeout:
            # The request was sent: the archive may still act on it (e.g. commit a registration).
            raise ArchiveUnavailableError(
                f"{method} {path}: archive timed out; will retry", maybe_applied=True
            ) from None
        except requests.ConnectionError as exc:
            raise ArchiveUnavailableError(
                f"{method} {path}: archive unreachable; will retry", maybe_applied=not _never_sent(exc)
            ) from None
        except requests.RequestException as exc:
            raise ArchiveUnavailableError(
                f"{method} {path}: {type(exc).__name__}; will retry", maybe_applied=True
            ) from None

    @staticmethod
    def _json(response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ArchiveUnavailableError(
                f"{what}: archive answered {response.status_code} with a non-JSON body; will retry",
                maybe_applied=response.ok,
            ) from None

    def _raise_for(self, response: requests.Response, what: str) -> None:
        status = response.status_code
        if status >= 500 or status in _RETRYABLE_4XX:
            # A 500 can come after the archive committed (its answer failed to render); a 502/504 from a
            # proxy while the archive kept working. 503, 429 and 408 mean the request was not handled.
            raise ArchiveUnavailableError(
                f"{what}: archive answered {status}; will retry", maybe_applied=status not in _NOT_HANDLED
            )
        if 300 <= status < 400:
            raise ArchiveRejectedError(f"{what}: archive answered {status} (redirect); check API_ROOT", status=status)
        if status in (401, 403):
            # A configuration problem, but retrying cannot fix it: the record waits in the DLQ/tag.
            detail = _detail(response)
            raise ArchiveRejectedError(f"{what}: archive refused the token ({status}: {detail})", status=status)
        if status >= 400:
            raise ArchiveRejectedError(f"{what}: archive rejected it ({status}): {_detail(response)}", status=status)

    def find_version(self, basename: str, md5: str) -> ExistingVersion | None:
        """The archive's version with this md5 under this basename, if any.

        `versions/?md5=` is ignored by the live archive (it lists everything), so the exact basename
        lookup is used and md5s are compared here.
        """
        what = f"GET frames/?basename_exact={basename}"
        response = self._call("GET", "frames/", params={"basename_exact": basename})
        self._raise_for(response, what)
        body = self._json(response, what)
        for frame in body.get("results", []) if isinstance(body, dict) else []:
            if frame.get("basename") != basename:
                continue
            for version in frame.get("version_set") or []:
                if version.get("md5") == md5:
                    return ExistingVersion(
                        frame_id=frame.get("id"),
                        key=version.get("key", ""),
                        md5=md5,
                        extension=version.get("extension", ""),
                        url=frame.get("url"),
                    )
        return None

    def frames_page(self, params: dict[str, Any]) -> dict[str, Any]:
        """One page of `GET frames/` (DRF: count, next, results) with these filters and limit/offset."""
        what = "GET frames/"
        response = self._call("GET", "frames/", params=params)
        self._raise_for(response, what)
        body = self._json(response, what)
        return body if isinstance(body, dict) else {}

    def post(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST frames/ or thumbnails/; returns the 201 body. Raises DuplicateMd5 on a duplicate md5."""
        what = f"POST {endpoint}"
        response = self._call("POST", endpoint, json=payload)
        if response.status_code == 400 and _is_duplicate_md5(response):
            raise DuplicateMd5()
        self._raise_for(response, what)
        if response.status_code != 201:
            raise ArchiveUnavailableError(
                f"{what}: archive answered {response.status_code}, not 201", maybe_applied=True
            )
        body = self._json(response, what)
        if not isinstance(body, dict) or body.get("id") is None:
            raise ArchiveUnavailableError(f"{what}: the archive's 201 carried no id", maybe_applied=True)
        return body


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection could not be opened (refused, no route): the archive saw nothing."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    cause = exc.args[0] if exc.args else None
    return isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError)


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason
    return str(body)[:500]


def _is_duplicate_md5(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    for item in body.get("version_set", []) if isinstance(body, dict) else []:
        if isinstance(item, dict) and any("already exists" in m for m in item.get("md5", [])):
            return True
    return False
