"""Migrating from ocs_ingester: its main caller's retry loop behaves the same, run side by side with 3.2.0.

The loop is BANZAI's `post_to_ingester` (the pipeline that feeds the archive): its except order is
DoNotRetryError (stop), NonFatalDoNotRetryError (stop), RetryError (retry at once, no limit),
BackoffRetryError (sleep 5**n s, give up after 5 sleeps). Sleeps are recorded, not slept. Each case runs the
loop against ocs_ingester 3.2.0 and against lambda_ingest in the same test, on the same archive emulator.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

import lambda_ingest
from tests.conftest import ADMIN_TOKEN, ARCHIVE, LANDING, set_env

NAME = "cpt1m010-kb70-20151219-0073-e00"
PATH = f"{NAME}.fits.fz"
RELATIVE_PATH = f"cpt/kb70/20151219/raw/{PATH}"  # ocs_archive's canonical path for this frame
MAX_ATTEMPTS = 20  # BANZAI retries RetryError without limit; a test must stop somewhere


@dataclass
class Trace:
    branches: list[str] = field(default_factory=list)
    sleeps: list[int] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    response: dict[str, Any] = field(default_factory=dict)


def post_to_ingester(ingester: Any, families: tuple[type, ...], file_object: io.BytesIO, path: str) -> Trace:
    """BANZAI's post_to_ingester (banzai/utils/file_utils.py), its branches and counters unchanged; the
    branch taken on each attempt and every sleep are recorded instead of logged and slept."""
    do_not_retry, non_fatal, retry_error, backoff_retry = families
    trace = Trace()
    retry = True
    try_counter = 1
    while retry:
        assert len(trace.branches) < MAX_ATTEMPTS, f"still retrying after {MAX_ATTEMPTS} attempts: {trace}"
        try:
            trace.response = ingester.upload_file_and_ingest_to_archive(file_object, path=path, file_metadata=None)
            trace.branches.append("ingested")
            retry = False
        except do_not_retry as exc:
            trace.branches.append("DoNotRetryError")
            trace.errors.append(exc)
            retry = False
        except non_fatal as exc:
            trace.branches.append("NonFatalDoNotRetryError")
            trace.errors.append(exc)
            retry = False
        except retry_error as exc:
            trace.branches.append("RetryError")
            trace.errors.append(exc)
            retry = True
            try_counter += 1
        except backoff_retry as exc:
            trace.branches.append("BackoffRetryError")
            trace.errors.append(exc)
            if try_counter > 5:
                retry = False
            else:
                trace.sleeps.append(5**try_counter)
                retry = True
                try_counter += 1
    return trace


def families_of_lambda_ingest() -> tuple[type, ...]:
    # The README's migration: `from lambda_ingest import DoNotRetryError, ...` replaces ocs_ingester.exceptions
    from lambda_ingest import BackoffRetryError, DoNotRetryError, NonFatalDoNotRetryError, RetryError

    return DoNotRetryError, NonFatalDoNotRetryError, RetryError, BackoffRetryError


def families_of_ocs_ingester() -> tuple[type, ...]:
    from ocs_ingester.exceptions import BackoffRetryError, DoNotRetryError, NonFatalDoNotRetryError, RetryError

    return DoNotRetryError, NonFatalDoNotRetryError, RetryError, BackoffRetryError


def run_lambda_ingest(file_object: io.BytesIO) -> Trace:
    return post_to_ingester(lambda_ingest, families_of_lambda_ingest(), file_object, PATH)


def run_ocs_ingester(ocs_ingester: ModuleType, file_object: io.BytesIO) -> Trace:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's WCS fix-up notes on the whole file (an error under -W error)
        return post_to_ingester(ocs_ingester, families_of_ocs_ingester(), file_object, PATH)


def frame(seed: int, **kwargs: Any) -> io.BytesIO:
    from lambda_ingest.local.synthetic import make_frame_bytes

    return io.BytesIO(make_frame_bytes(NAME, ".fits.fz", data_bytes=2880, seed=seed, **kwargs))


# ocs_ingester and ocs_archive read their settings into module globals and default arguments at import.
_REFERENCE_MODULES = (
    "ocs_archive.settings.settings",
    "ocs_ingester.settings.settings",
    "ocs_archive.storage.filesystemstore",
    "ocs_archive.storage.s3store",
    "ocs_archive.storage.filestorefactory",
    "ocs_ingester.archive",
    "ocs_ingester.ingester",
)


@pytest.fixture
def ocs_ingester() -> Iterator[Callable[..., ModuleType]]:
    """ocs_ingester 3.2.0 as its users run it: `configure(NAME=value, ...)` imports it again with that
    environment and returns its `ingester` module; the environment and modules are restored afterwards."""
    saved: dict[str, str | None] = {}

    def configure(**env: str | None) -> ModuleType:
        for name in env:
            saved.setdefault(name, os.environ.get(name))
        _apply(env)
        return sys.modules["ocs_ingester.ingester"]

    yield configure
    if saved:
        _apply(saved)


def _apply(env: dict[str, str | None]) -> None:
    """Set (or, for None, unset) these variables, then reload ocs_ingester's modules, which read them at import."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for module in _REFERENCE_MODULES:
        importlib.reload(importlib.import_module(module))


def archive_versions(s3: Any) -> list[dict[str, Any]]:
    return s3.list_object_versions(Bucket=ARCHIVE).get("Versions", [])


# --- the archive answers 503 to every POST ------------------------------------------------------------------


def test_503_on_every_post_backs_off_five_times_then_gives_up_as_with_ocs_ingester(s3, archive_api, ocs_ingester):
    # Given an archive answering 503 to every registration
    archive_api.inject(status=503, count=100, method="POST", path_prefix="frames/")
    # When BANZAI's loop posts a frame through lambda_ingest
    ours = run_lambda_ingest(frame(seed=1))
    # Then it takes the backoff branch six times, sleeping 5, 25, 125, 625 and 3125 s, and gives up
    assert ours.branches == ["BackoffRetryError"] * 6
    assert ours.sleeps == [5, 25, 125, 625, 3125]
    assert ours.response == {}
    assert all("503" in str(exc) for exc in ours.errors)
    # And no attempt left a copy in the archive bucket
    assert archive_versions(s3) == []
    # When the same loop posts a frame through ocs_ingester 3.2.0
    reference = ocs_ingester(API_ROOT=archive_api.api_root, AUTH_TOKEN=ADMIN_TOKEN, BUCKET=ARCHIVE, FILESTORE_TYPE="s3")
    theirs = run_ocs_ingester(reference, frame(seed=2))
    # Then it took the same branches and slept the same (leaving one orphaned copy per attempt)
    assert (ours.branches, ours.sleeps, ours.response) == (theirs.branches, theirs.sleeps, theirs.response)
    assert len(archive_versions(s3)) == 6
    assert archive_api.frames() == []


def test_refused_connections_back_off_where_ocs_ingester_let_the_error_escape(s3, archive_api, ocs_ingester):
    reference = ocs_ingester(API_ROOT=archive_api.api_root, AUTH_TOKEN=ADMIN_TOKEN, BUCKET=ARCHIVE, FILESTORE_TYPE="s3")
    # Given an archive host that refuses connections
    with archive_api.refusing_connections():
        # When BANZAI's loop posts a frame through lambda_ingest
        ours = run_lambda_ingest(frame(seed=3))
        # Then it backs off as for any unavailable archive, and gives up after five sleeps
        assert ours.branches == ["BackoffRetryError"] * 6
        assert ours.sleeps == [5, 25, 125, 625, 3125]
        assert all("unreachable" in str(exc) for exc in ours.errors)
        # While ocs_ingester 3.2.0 let requests' ConnectionError escape all four except clauses
        with pytest.raises(requests.ConnectionError):
            run_ocs_ingester(reference, frame(seed=3))
    assert archive_versions(s3) == []


# --- no token -------------------------------------------------------------------------------------------------


def test_no_token_stops_at_once_after_the_file_was_validated(s3, archive_api, ocs_ingester, monkeypatch):
    from lambda_ingest.local.synthetic import lco_header

    set_env(monkeypatch, AUTH_TOKEN=None)
    reference = ocs_ingester(API_ROOT=archive_api.api_root, AUTH_TOKEN=None, BUCKET=ARCHIVE, FILESTORE_TYPE="s3")
    # Given no token at all, when BANZAI's loop posts a valid frame through lambda_ingest
    ours = run_lambda_ingest(frame(seed=4))
    # Then it stops at once (DoNotRetryError: retrying cannot bring a token), naming what to set
    assert ours.branches == ["DoNotRetryError"]
    assert ours.sleeps == []
    assert "AUTH_TOKEN" in str(ours.errors[0])
    assert archive_versions(s3) == []
    # As ocs_ingester 3.2.0, whose built-in token the archive refused (401)
    theirs = run_ocs_ingester(reference, frame(seed=4))
    assert (ours.branches, ours.sleeps) == (theirs.branches, theirs.sleeps)
    # And a file missing a required header is refused for that, before the token is looked for
    invalid = frame(seed=5, header=lco_header(NAME, drop=("DAY-OBS",)))
    ours = run_lambda_ingest(invalid)
    assert ours.branches == ["DoNotRetryError"]
    assert "DAY-OBS" in str(ours.errors[0])
    assert "AUTH_TOKEN" not in str(ours.errors[0])
    assert run_ocs_ingester(reference, invalid).branches == ["DoNotRetryError"]


# --- FILESTORE_TYPE=local -----------------------------------------------------------------------------------


def test_local_file_store_stores_at_ocs_ingesters_path_and_registers(
    s3, archive_api, ocs_ingester, monkeypatch, tmp_path: Path
):
    ours_root, their_root = tmp_path / "ours", tmp_path / "theirs"
    reference = ocs_ingester(
        API_ROOT=archive_api.api_root,
        AUTH_TOKEN=ADMIN_TOKEN,
        FILESTORE_TYPE="local",
        FILESYSTEM_STORAGE_ROOT_DIR=str(their_root),
    )
    set_env(monkeypatch, FILESTORE_TYPE="local", FILESYSTEM_STORAGE_ROOT_DIR=str(ours_root))
    # Given a site storing the archive's files on a file system, when BANZAI's loop posts two reductions of
    # one frame, one through ocs_ingester 3.2.0 and one through lambda_ingest
    their_frame, our_frame = frame(seed=6), frame(seed=7)
    theirs = run_ocs_ingester(reference, their_frame)
    ours = run_lambda_ingest(our_frame)
    # Then both are ingested on the first attempt
    assert theirs.branches == ours.branches == ["ingested"]
    # And each file is at the same path under its store's root, holding its bytes
    assert sorted(p.relative_to(ours_root) for p in ours_root.rglob("*") if p.is_file()) == [Path(RELATIVE_PATH)]
    assert sorted(p.relative_to(their_root) for p in their_root.rglob("*") if p.is_file()) == [Path(RELATIVE_PATH)]
    assert (ours_root / RELATIVE_PATH).read_bytes() == our_frame.getvalue()
    assert (their_root / RELATIVE_PATH).read_bytes() == their_frame.getvalue()
    # And both are registered with the local store's version key (the md5), ours as the newest version
    md5s = [hashlib.md5(f.getvalue()).hexdigest() for f in (our_frame, their_frame)]
    [registered] = archive_api.frames()
    assert [(v["key"], v["md5"]) for v in registered["version_set"]] == [(m, m) for m in md5s]
    assert ours.response["version_set"] == [{"key": md5s[0], "md5": md5s[0], "extension": ".fits.fz"}]
    assert ours.response["frameid"] == registered["id"]
    # And nothing went to S3
    assert archive_versions(s3) == []
    # When the loop posts the same file again, both call it already there and stop
    assert run_lambda_ingest(our_frame).branches == ["NonFatalDoNotRetryError"]


def test_the_function_refuses_a_file_store_other_than_s3_at_start(s3, archive_api, monkeypatch, tmp_path: Path):
    from lambda_ingest.context import LocalContext
    from lambda_ingest.errors import ConfigurationError
    from lambda_ingest.handler import handler

    # Given the function configured with ocs_ingester's local file store
    set_env(monkeypatch, FILESTORE_TYPE="local", FILESYSTEM_STORAGE_ROOT_DIR=str(tmp_path))
    s3.put_object(Bucket=LANDING, Key=PATH, Body=frame(seed=8).getvalue())
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": LANDING}, "object": {"key": PATH}},
            }
        ]
    }
    # When it is invoked, then it fails as misconfigured, naming the variable, and touches nothing
    with pytest.raises(ConfigurationError, match="FILESTORE_TYPE"):
        handler(event, LocalContext())
    assert archive_versions(s3) == []
    assert s3.list_objects_v2(Bucket=LANDING)["KeyCount"] == 1
    assert not any(tmp_path.iterdir())


def test_both_commands_store_in_the_local_file_store(s3, archive_api, monkeypatch, tmp_path: Path, capsys) -> None:
    from lambda_ingest.cli import main, ocs_ingest_frame

    root = tmp_path / "store"
    set_env(monkeypatch, FILESTORE_TYPE="local", FILESYSTEM_STORAGE_ROOT_DIR=str(root))
    first, second = tmp_path / "night1" / PATH, tmp_path / "night2" / PATH
    for path, seed in ((first, 9), (second, 10)):
        path.parent.mkdir()
        path.write_bytes(frame(seed=seed).getvalue())
    # When ocs_ingester's script ingests a frame, then it is stored at its canonical path under the root
    with pytest.raises(SystemExit) as done:
        ocs_ingest_frame([str(first)])
    assert done.value.code == 0, capsys.readouterr().out
    assert (root / RELATIVE_PATH).read_bytes() == first.read_bytes()
    # When `lambda-ingest ingest` ingests a new reduction of it, then it replaces the file there (ocs_archive's
    # local store keeps no versions), and the archive holds both versions, keyed by md5
    assert main(["ingest", str(second)]) == 0
    assert (root / RELATIVE_PATH).read_bytes() == second.read_bytes()
    md5s = [hashlib.md5(p.read_bytes()).hexdigest() for p in (second, first)]
    assert [v["key"] for v in archive_api.frames()[0]["version_set"]] == md5s
    assert archive_versions(s3) == []
