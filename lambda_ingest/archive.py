"""Science Archive REST client: duplicate lookup and registration, with timeouts and error classes.

Classification (science-archive-api.md), decided here once:
- 201 is the only success of a POST (frames/: with an id; thumbnails/: an upsert whose body has key and
  basename, no id); 400 duplicate md5 means another delivery already registered the bytes;
- 400 about the record -> ArchiveRejectedError (the file's fault);
- 401/403 -> ArchiveAccessError (the token; fetched again once before giving up), 404 or 3xx -> wrong
  API_ROOT (ArchiveAccessError): system faults, never blamed on a file;
- 5xx/408/429, timeouts, refused connections -> ArchiveUnavailableError (retry later).
Reasons are one line, never an HTML body, and say nothing about retrying: the caller decides that. The
token goes only into the Authorization header and is never part of an error message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from lambda_ingest.errors import (
    ArchiveAccessError,
    ArchiveRejectedError,
    ArchiveUnavailableError,
    ConfigurationError,
)
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
    """`refresh_token`: returns the token fetched afresh (bypassing any cache); called once on a 401/403 so
    a rotated secret is picked up at once instead of failing every file until the cache expires."""

    def __init__(self, settings: Settings, token: str, refresh_token: Callable[[], str] | None = None) -> None:
        if not token:
            raise ConfigurationError("no archive token: set AUTH_TOKEN or AUTH_TOKEN_SECRET_ARN")
        self.api_root = settings.archive_api_root
        self._timeout = (settings.http_connect_timeout, settings.http_read_timeout)
        self._token = token
        self._refresh_token = refresh_token
        self._token_lock = threading.Lock()
        self._local = threading.local()  # requests.Session is not thread-safe; one per thread

    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update({"Accept": "application/json"})
            self._local.session = session
        return session

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.api_root + path
        headers = {"Authorization": f"Token {self._token}"}
        try:
            # Redirects are not followed: the archive's 301 for a missing slash turns a POST into a GET.
            return self._session.request(
                method, url, headers=headers, timeout=self._timeout, allow_redirects=False, **kwargs
            )
        except requests.ConnectTimeout:
            raise ArchiveUnavailableError(f"{method} {url}: archive unreachable (connect timeout)") from None
        except requests.Timeout:
            # The request was sent: the archive may still act on it (e.g. commit a registration).
            raise ArchiveUnavailableError(f"{method} {url}: archive timed out", maybe_applied=True) from None
        except requests.ConnectionError as exc:
            raise ArchiveUnavailableError(
                f"{method} {url}: archive unreachable", maybe_applied=not _never_sent(exc)
            ) from None
        except requests.RequestException as exc:
            raise ArchiveUnavailableError(f"{method} {url}: {type(exc).__name__}", maybe_applied=True) from None

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call; on 401/403 the token is fetched again once and, if it changed, the call is repeated."""
        response = self._call(method, path, **kwargs)
        if response.status_code in (401, 403) and self._refresh_token is not None:
            used = self._token
            with self._token_lock:
                if self._token == used:  # another thread may have refreshed it already
                    self._token = self._refresh_token() or used
            if self._token != used:
                response.close()
                response = self._call(method, path, **kwargs)
        return response

    def _json(self, response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            self._raise_for_html(response, what)
            raise ArchiveUnavailableError(
                f"{what}: archive answered {response.status_code} with a non-JSON body",
                maybe_applied=response.ok,
            ) from None

    def _raise_for_html(self, response: requests.Response, what: str) -> None:
        # The archive's API answers JSON; an HTML page means API_ROOT points at the web site, not the API.
        if "html" in response.headers.get("Content-Type", "").lower():
            raise ArchiveAccessError(
                f"{what}: {self.api_root} answered {response.status_code} with an HTML page, not the archive API; "
                "check API_ROOT",
                status=response.status_code,
            )

    def _raise_for(self, response: requests.Response, what: str) -> None:
        status = response.status_code
        if status >= 500 or status in _RETRYABLE_4XX:
            # A 500 can come after the archive committed (its answer failed to render); a 502/504 from a
            # proxy while the archive kept working. 503, 429 and 408 mean the request was not handled.
            raise ArchiveUnavailableError(
                f"{what}: archive answered {status}", maybe_applied=status not in _NOT_HANDLED
            )
        if 300 <= status < 400:
            location = response.headers.get("Location", "")
            raise ArchiveAccessError(
                f"{what}: archive answered {status} (redirect{' to ' + location if location else ''}); "
                f"check API_ROOT ({self.api_root})",
                status=status,
            )
        if status in (401, 403):
            raise ArchiveAccessError(
                f"{what}: archive refused the token ({status}); check AUTH_TOKEN / AUTH_TOKEN_SECRET_ARN",
                status=status,
            )
        if status == 404:
            # frames/ and thumbnails/ always exist: a 404 means the API root is wrong (an extra /api/, ...).
            raise ArchiveAccessError(
                f"{what}: archive answered 404 at {response.url or self.api_root}; check API_ROOT", status=status
            )
        if status >= 400:
            self._raise_for_html(response, what)
            raise ArchiveRejectedError(f"{what}: archive rejected it ({status}): {_detail(response)}", status=status)

    def find_version(self, basename: str, md5: str) -> ExistingVersion | None:
        """The archive's version with this md5 under this basename, if any.

        `versions/?md5=` is ignored by the live archive (it lists everything), so the exact basename
        lookup is used and md5s are compared here.
        """
        what = f"GET frames/?basename_exact={basename}"
        response = self._request("GET", "frames/", params={"basename_exact": basename})
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
                        # The matched version's own URL: the frame's top-level url is its newest version's.
                        url=version.get("url"),
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
        """POST frames/ or thumbnails/; returns the 201 body. Raises DuplicateMd5 on a duplicate md5.

        frames/ answers the frame (with its id); thumbnails/ is an upsert by thumbnail basename whose 201
        body is {frame, size, basename, url, key, extension}, no id: its `key` must be the one posted.
        """
        what = f"POST {endpoint}"
        response = self._request("POST", endpoint, json=payload)
        if response.status_code == 400 and _is_duplicate_md5(response):
            raise DuplicateMd5()
        self._raise_for(response, what)
        if response.status_code != 201:
            raise ArchiveUnavailableError(
                f"{what}: archive answered {response.status_code}, not 201", maybe_applied=True
            )
        body = self._json(response, what)
        if endpoint.startswith("thumbnails"):
            if not isinstance(body, dict) or body.get("key") != payload.get("key"):
                raise ArchiveUnavailableError(
                    f"{what}: the archive's 201 did not name the posted version key", maybe_applied=True
                )
        elif not isinstance(body, dict) or body.get("id") is None:
            raise ArchiveUnavailableError(f"{what}: the archive's 201 carried no id", maybe_applied=True)
        return body


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection could not be opened (refused, no route): the archive saw nothing."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    cause = exc.args[0] if exc.args else None
    return isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError)


def _detail(response: requests.Response) -> str:
    """The archive's error body, on one line and bounded (its DRF field errors name the bad field)."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text[:200].split()) or response.reason
    return " ".join(str(body).split())[:500]


def _is_duplicate_md5(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    for item in body.get("version_set", []) if isinstance(body, dict) else []:
        if isinstance(item, dict) and any("already exists" in m for m in item.get("md5", [])):
            return True
    return False
