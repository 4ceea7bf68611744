"""The archive client's classification of every answer: status -> error class, maybe_applied, reason.

A tiny HTTP server on loopback answers each request with what the table says (the archive's real shapes:
DRF JSON bodies, HTML error pages, redirects), so the client is exercised over real HTTP: requests, its
timeouts and its connection errors included. No mock of requests.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lambda_ingest import errors
from lambda_ingest.archive import ArchiveClient, DuplicateMd5
from lambda_ingest.settings import Settings

TOKEN = "unit-token-0123456789"
FRAME = {"basename": "ogg2m001-fs02-20260101-0001-e00", "version_set": [{"key": "k" * 32, "md5": "0" * 32}]}
HTML = ("text/html; charset=utf-8", "<html><body>\n<h1>Server Error (500)</h1>\n</body></html>")


@dataclass
class Answer:
    status: int
    body: Any = None  # a dict/list is sent as JSON; a (content type, text) pair as is
    headers: dict[str, str] | None = None
    drop: bool = False  # close the connection without answering (after reading the request)
    stall: bool = False  # answer nothing until the test ends (a read timeout)


class Archive(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = Answer(200, {"results": []})
        self.release = threading.Event()
        self.seen: list[tuple[str, str]] = []

    @property
    def api_root(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: Archive

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.seen.append((self.command, self.headers.get("Authorization", "")))
        answer = self.server.answer
        if answer.stall:
            self.server.release.wait(10)
            return
        if answer.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(answer.body, tuple):
            content_type, text = answer.body
        else:
            content_type, text = "application/json", json.dumps(answer.body)
        data = text.encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (answer.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer


@pytest.fixture
def archive() -> Iterator[Archive]:
    server = Archive()
    # A short poll so shutdown() at teardown returns at once (the default waits up to half a second).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def client_for(api_root: str, read_timeout: float = 5.0) -> ArchiveClient:
    settings = Settings(api_root=api_root, http_connect_timeout=2.0, http_read_timeout=read_timeout)
    return ArchiveClient(settings, TOKEN)


def created(body: dict[str, Any]) -> Answer:
    return Answer(201, body)


# name -> (answer to POST frames/, expected class, maybe_applied (None: not an ArchiveUnavailableError), reason)
POST_ANSWERS = {
    "400-record": (
        Answer(400, {"site_id": ["Ensure this field has no more than 3 characters."]}),
        errors.ArchiveRejectedError,
        None,
        "archive rejected it (400): {'site_id': ['Ensure this field has no more than 3 characters.']}",
    ),
    "400-long-key": (
        Answer(400, {"version_set": [{"key": ["Ensure this field has no more than 32 characters."]}]}),
        errors.ArchiveRejectedError,
        None,
        "archive rejected it (400): {'version_set': [{'key':",
    ),
    "400-html": (Answer(400, HTML), errors.ArchiveAccessError, None, "answered 400 with an HTML page"),
    "401": (
        Answer(401, {"detail": "Invalid token."}),
        errors.ArchiveAccessError,
        None,
        "archive refused the token (401); check AUTH_TOKEN / AUTH_TOKEN_SECRET_ARN",
    ),
    "403": (
        Answer(403, {"detail": "You do not have permission to perform this action."}),
        errors.ArchiveAccessError,
        None,
        "archive refused the token (403)",
    ),
    "404-html": (Answer(404, ("text/html", "<h1>Not Found</h1>")), errors.ArchiveAccessError, None, "404 at"),
    "301": (
        Answer(301, ("text/html", ""), {"Location": "/frames/"}),
        errors.ArchiveAccessError,
        None,
        "archive answered 301 (redirect to /frames/); check API_ROOT",
    ),
    "408": (Answer(408, {"detail": "timeout"}), errors.ArchiveUnavailableError, False, "archive answered 408"),
    "429": (Answer(429, {"detail": "throttled"}), errors.ArchiveUnavailableError, False, "archive answered 429"),
    "500-html": (Answer(500, HTML), errors.ArchiveUnavailableError, True, "archive answered 500"),
    "502": (Answer(502, ("text/html", "Bad Gateway")), errors.ArchiveUnavailableError, True, "archive answered 502"),
    "503": (Answer(503, ("text/html", "busy")), errors.ArchiveUnavailableError, False, "archive answered 503"),
    "504": (Answer(504, ("text/html", "")), errors.ArchiveUnavailableError, True, "archive answered 504"),
    "200-not-201": (Answer(200, {"id": 1}), errors.ArchiveUnavailableError, True, "archive answered 200, not 201"),
    "201-without-id": (created({"basename": "x"}), errors.ArchiveUnavailableError, True, "201 carried no id"),
    "201-html": (Answer(201, HTML), errors.ArchiveAccessError, None, "answered 201 with an HTML page"),
    "dropped": (Answer(0, drop=True), errors.ArchiveUnavailableError, True, "archive unreachable"),
}


@pytest.mark.parametrize(("answer", "expected", "maybe_applied", "reason"), POST_ANSWERS.values(), ids=POST_ANSWERS)
def test_post_answer_is_classified(
    archive: Archive, answer: Answer, expected: type, maybe_applied: bool | None, reason: str
) -> None:
    # Given the archive answering a registration with `answer`
    archive.answer = answer
    # When the client posts a frame
    with pytest.raises(errors.IngestError) as caught:
        client_for(archive.api_root).post("frames/", FRAME)
    # Then the error is exactly `expected`, says whether the archive may have acted, on one line, no token
    err = caught.value
    assert type(err) is expected
    assert getattr(err, "maybe_applied", None) == maybe_applied
    assert err.reason.startswith("POST ") and "frames/: " in err.reason and reason in err.reason
    assert "\n" not in str(err) and TOKEN not in str(err) and "<" not in str(err)


def test_201_with_an_id_is_the_frame(archive: Archive) -> None:
    # Given the archive registering the frame, When posted, Then the 201 body comes back, token in the header
    archive.answer = created({"id": 7, **FRAME})
    assert client_for(archive.api_root).post("frames/", FRAME)["id"] == 7
    assert archive.seen == [("POST", f"Token {TOKEN}")]


def test_thumbnail_201_without_id_is_the_upsert_naming_the_posted_key(archive: Archive) -> None:
    payload = {"frame_basename": "f", "key": "t" * 32, "md5": "1" * 32}
    archive.answer = created({"frame": 7, "size": "small", "basename": "f-thumb", "key": "t" * 32})
    assert client_for(archive.api_root).post("thumbnails/", payload)["key"] == "t" * 32
    # ... and a 201 naming another key is not taken for success
    archive.answer = created({"frame": 7, "size": "small", "basename": "f-thumb", "key": "u" * 32})
    with pytest.raises(errors.ArchiveUnavailableError, match="did not name the posted version key") as caught:
        client_for(archive.api_root).post("thumbnails/", payload)
    assert caught.value.maybe_applied


def test_duplicate_md5_is_its_own_answer_not_a_rejection(archive: Archive) -> None:
    archive.answer = Answer(400, {"version_set": [{"md5": ["version with this md5 already exists."]}]})
    with pytest.raises(DuplicateMd5):
        client_for(archive.api_root).post("frames/", FRAME)


def test_read_timeout_may_have_been_applied(archive: Archive) -> None:
    # Given the archive reading the POST and then saying nothing
    archive.answer = Answer(0, stall=True)
    # When the client posts with a short read timeout
    with pytest.raises(errors.ArchiveUnavailableError) as caught:
        client_for(archive.api_root, read_timeout=0.2).post("frames/", FRAME)
    # Then it is retried later, knowing the archive may have registered it all the same
    assert caught.value.maybe_applied
    assert caught.value.reason == f"POST {archive.api_root}frames/: archive timed out"


def test_refused_connection_was_never_applied() -> None:
    # Given a loopback port where nothing listens
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # When the client posts there, Then it is retried later, and the archive cannot have acted on it
    with pytest.raises(errors.ArchiveUnavailableError) as caught:
        client_for(f"http://127.0.0.1:{port}/").post("frames/", FRAME)
    assert caught.value.maybe_applied is False
    assert caught.value.reason == f"POST http://127.0.0.1:{port}/frames/: archive unreachable"


LOOKUP_ANSWERS = {
    "401": (Answer(401, {"detail": "Invalid token."}), errors.ArchiveAccessError),
    "404-html": (Answer(404, ("text/html", "<h1>Not Found</h1>")), errors.ArchiveAccessError),
    "200-html": (Answer(200, ("text/html", "<html>portal</html>")), errors.ArchiveAccessError),
    "500": (Answer(500, HTML), errors.ArchiveUnavailableError),
    "400": (Answer(400, {"basename_exact": ["bad"]}), errors.ArchiveRejectedError),
}


@pytest.mark.parametrize(("answer", "expected"), LOOKUP_ANSWERS.values(), ids=LOOKUP_ANSWERS)
def test_lookup_answer_is_classified(archive: Archive, answer: Answer, expected: type) -> None:
    archive.answer = answer
    with pytest.raises(errors.IngestError) as caught:
        client_for(archive.api_root).find_version(FRAME["basename"], "0" * 32)
    assert type(caught.value) is expected
    assert caught.value.reason.startswith(f"GET frames/?basename_exact={FRAME['basename']}: ")


def test_lookup_finds_only_the_exact_basename_and_md5(archive: Archive) -> None:
    # Given the archive listing a near-namesake and the frame with two versions
    versions = [{"key": "a" * 32, "md5": "1" * 32, "extension": ".fits.fz", "url": "u1"}]
    versions.append({"key": "b" * 32, "md5": "2" * 32, "extension": ".fits.fz", "url": "u2"})
    archive.answer = Answer(
        200,
        {
            "count": 2,
            "results": [
                {"id": 1, "basename": FRAME["basename"] + "x", "version_set": [{"key": "c" * 32, "md5": "2" * 32}]},
                {"id": 2, "basename": FRAME["basename"], "version_set": versions},
            ],
        },
    )
    client = client_for(archive.api_root)
    # When looked up by md5, Then the matching version of the exact basename is found, with its own URL
    found = client.find_version(FRAME["basename"], "2" * 32)
    assert found is not None and (found.frame_id, found.key, found.url) == (2, "b" * 32, "u2")
    assert client.find_version(FRAME["basename"], "3" * 32) is None


def test_refused_token_is_fetched_again_once_then_a_system_fault(archive: Archive) -> None:
    # Given an archive refusing every token, and a secret that was rotated since the client read it
    archive.answer = Answer(401, {"detail": "Invalid token."})
    settings = Settings(api_root=archive.api_root, http_connect_timeout=2.0, http_read_timeout=5.0)
    client = ArchiveClient(settings, TOKEN, refresh_token=lambda: "rotated-token")
    # When it posts, Then it tries the fresh token once, and then calls it the token's fault (not the file's)
    with pytest.raises(errors.ArchiveAccessError, match=r"refused the token \(401\)"):
        client.post("frames/", FRAME)
    assert archive.seen == [("POST", f"Token {TOKEN}"), ("POST", "Token rotated-token")]
