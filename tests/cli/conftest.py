"""The command line against a real local stack: moto's S3/SQS/DynamoDB server and the archive emulator.

One stack serves the whole package (starting it costs about a second). The archive refuses an md5 it
already holds, so every test makes frames of its own (`new_frame` numbers them across the package).
Commands run as the user runs them: the installed console scripts in a child process (`cli.run`), or
for extra cases the console-script function in-process (`in_process`).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lambda_ingest.local.stack import ARCHIVE_BUCKET, LocalStack

BIN = Path(sys.executable).parent
_ENTRY_POINTS = {
    "lambda-ingest": "from lambda_ingest.cli import main; raise SystemExit(main())",
    "ocs_ingest_frame": "from lambda_ingest.cli import ocs_ingest_frame; ocs_ingest_frame()",
}
_sequence = itertools.count(1000)  # frame numbers (and seeds) unique across the package's tests


_shared: list[LocalStack] = []  # the one stack of this folder's tests, while they run
HERE = Path(__file__).resolve().parent


@pytest.fixture
def stack() -> LocalStack:
    """The stack all tests here share (started by the first that asks).

    Not a package-scoped fixture: for a folder without __init__.py pytest keeps those until the session
    ends, and moto's server keeps its tables in process-wide state, so a later LocalStack in this process
    (the demo's tests) would find its table already there. `pytest_runtest_teardown` below stops and resets
    it as soon as the next test is elsewhere.
    """
    if not _shared:
        _shared.append(LocalStack().start())
    return _shared[0]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _shared and (nextitem is None or HERE not in nextitem.path.parents):
        local = _shared.pop()
        local.s3_server.reset()  # forget its buckets, queues and table
        local.stop()


def command(name: str) -> list[str]:
    """The installed console script; `python -c` of the same function when the package is not installed."""
    script = BIN / name
    return [str(script)] if script.exists() else [sys.executable, "-c", _ENTRY_POINTS[name]]


@dataclass
class Cli:
    stack: LocalStack

    def env(self, **overrides: str | None) -> dict[str, str]:
        env = {**os.environ, **self.stack.environment()}
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def run(self, *args: Any, program: str = "lambda-ingest", **env: str | None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command(program), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env(**env),
            check=False,
        )


@pytest.fixture
def cli(stack: LocalStack) -> Cli:
    return Cli(stack)


@pytest.fixture
def in_process(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    """Point this process at the stack (undone after the test) for in-process `main([...])` calls."""
    from lambda_ingest.outcomes import reset_processor
    from lambda_ingest.settings import reset_settings

    for name, value in stack.environment().items():
        monkeypatch.setenv(name, value)
    reset_settings()
    reset_processor()
    return stack


@pytest.fixture
def new_frame(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic LCO frame no other test uses; `drop=("DAY-OBS",)` makes one the archive refuses."""
    from lambda_ingest.local import synthetic

    def make(
        ext: str = ".fits.fz", drop: tuple[str, ...] = (), folder: Path | None = None, data_bytes: int = 16 * 1024
    ) -> Path:
        seq = next(_sequence)
        name = synthetic.frame_name(seq=seq, ext="")
        header = synthetic.lco_header(name, drop=drop) if drop else None
        path = (folder or tmp_path) / f"{name}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(synthetic.make_frame_bytes(name, ext, header=header, seed=seq, data_bytes=data_bytes))
        return path

    return make


def basename(path: Path) -> str:
    return path.name.split(".", 1)[0]


def archive_frames(stack: LocalStack) -> dict[str, dict[str, Any]]:
    assert stack.archive is not None
    return {frame["basename"]: frame for frame in stack.archive.frames()}


def archive_versions(stack: LocalStack) -> list[tuple[str, str]]:
    """Every (key, version id) in the archive bucket."""
    listing = stack.client("s3").list_object_versions(Bucket=ARCHIVE_BUCKET)
    return sorted((v["Key"], v["VersionId"]) for v in listing.get("Versions", []))


def lines(stdout: str) -> list[list[str]]:
    return [line.split("\t") for line in stdout.splitlines() if line]
