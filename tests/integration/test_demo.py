"""`lambda-ingest demo`: the README's first command, run in its short form, and its table checked."""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests

from lambda_ingest.cli import main
from lambda_ingest.local import demo
from lambda_ingest.local.stack import LANDING_BUCKET

VERSION_ID = re.compile(r"^[A-Za-z0-9._]{32}$")
BIN = Path(sys.executable).parent


def table(stdout: str) -> dict[str, dict[str, str]]:
    """The demo's table as {file: {column: cell}} (cells are separated by two or more spaces)."""
    text = stdout.splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("file "))
    columns = demo.TABLE_HEADER
    rows = {}
    for line in text[start + 2 :]:
        if not line or line.startswith("download check"):
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(columns), line
        rows[cells[0]] = dict(zip(columns, cells, strict=True))
    return rows


def test_full_demo_downloads_the_bytes_it_uploaded_also_with_two_versions_of_one_frame() -> None:
    # Given the full sample set, where one frame gets a second version (.fits beside .fits.fz)
    # When `make demo` runs it (its own process, as make runs it: moto's backends are per process)
    done = subprocess.run(
        [str(BIN / "lambda-ingest"), "demo"], capture_output=True, text=True, timeout=120, check=False
    )
    # Then its download check follows a version url the archive serves and gets the uploaded bytes back
    assert done.returncode == 0, done.stdout + done.stderr
    assert "download check passed" in done.stdout


def test_quick_demo_table(capsys) -> None:
    from lambda_ingest.local import synthetic

    environment = dict(os.environ)
    # When the demo runs (short form) through the command line's entry point
    code = main(["demo", "--quick"])
    out = capsys.readouterr().out
    # Then it exits 0 and its table shows every outcome
    assert code == 0, out
    rows = table(out)
    samples = {s.key: s for s in demo.sample_frames(quick=True)}
    assert set(rows) == set(samples)
    raw = synthetic.frame_name(seq=73)
    experimental = synthetic.frame_name(
        site="coj", telnum=11, instrument="fl08", day="20151216", seq=48, obstype_letter="x"
    )
    bad = synthetic.frame_name(seq=99)

    first, other, again, rejected = (
        rows[f"raw/{raw}"],
        rows[f"raw/{experimental}"],
        rows[f"retry/{raw}"],
        rows[f"raw/{bad}"],
    )
    assert first["outcome"] == other["outcome"] == "ingested"
    assert first["archive key / reason"] == f"cpt/kb70/20151219/raw/{raw}"
    assert other["archive key / reason"] == f"coj/fl08/20151216/raw/{experimental}"
    for row in (first, other):
        assert VERSION_ID.match(row["version id"]), row
        assert row["md5"] == hashlib.md5(samples[row["file"]].data).hexdigest()
        assert row["frame"].isdigit()
        assert re.fullmatch(r"\d+ ms", row["time"])
    # The same bytes uploaded again: already ingested, pointing at the first upload's version
    assert again["outcome"] == "already_ingested"
    assert (again["archive key / reason"], again["version id"], again["md5"], again["frame"]) == (
        first["archive key / reason"],
        first["version id"],
        first["md5"],
        first["frame"],
    )
    # The rejected file with its reason, and nothing else
    assert rejected["outcome"] == "rejected"
    assert rejected["archive key / reason"] == "missing required header DAY-OBS"
    assert rejected["version id"] == rejected["md5"] == rejected["frame"] == "-"
    # The download check and the one-line summary
    assert re.search(
        r"^download check: frame \d+ version url returns \d+ bytes, identical to the uploaded raw/\S+$",
        out,
        re.MULTILINE,
    )
    assert re.search(
        r"^4 files: 2 ingested, 1 already ingested, 1 rejected; download check passed; \d+\.\d s$", out, re.MULTILINE
    )
    # And the outcome events a subscriber got through EventBridge are listed: one per new frame and rejection
    assert "events published to EventBridge bus lambda-ingest-events: 3" in out
    published = re.findall(r"^  (Frame Archived|File Rejected)\s+(\S+)\s+(.+)$", out, re.MULTILINE)
    assert sorted((kind, key) for kind, key, _ in published) == [
        ("File Rejected", f"raw/{bad}"),
        ("Frame Archived", f"raw/{experimental}"),
        ("Frame Archived", f"raw/{raw}"),
    ]
    # And this process is not left pointing at the stopped stack
    assert dict(os.environ) == environment


def test_frames_must_be_a_directory(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["demo", "--quick", "--frames", str(tmp_path / "missing")])
    assert done.value.code == 2
    assert "is not a directory" in capsys.readouterr().err


class Lines:
    """A child's stdout, line by line, with a timeout (a reader thread feeds a queue)."""

    def __init__(self, stream) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream) -> None:
        with contextlib.suppress(ValueError, OSError):  # the pipe closed under us
            for line in stream:
                self._queue.put(line.rstrip("\n"))

    def until(self, predicate, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError("timed out; output so far:\n" + "\n".join(self.seen))


def test_demo_with_real_frames_and_keep(fixtures_dir: Path, tmp_path: Path, new_frame_bytes) -> None:
    # Given a folder with two real frames
    real = ["cpt1m010-kb70-20151219-0073-e10.fits.fz", "coj1m011-kb05-20150219-0125-e90.fits"]
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in real:
        shutil.copy(fixtures_dir / "fits" / name, folder / name)
    script = BIN / "lambda-ingest"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "lambda_ingest.cli"]
    # When the demo runs on them with --keep
    child = subprocess.Popen(
        [*argv, "demo", "--quick", "--keep", "--frames", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = Lines(child.stdout)
    try:
        out.until(lambda line: line.startswith("Watching"))
        text = "\n".join(out.seen)
        # Then the real frames are in the table, ingested
        rows = table(text)
        for name in real:
            assert rows[f"real/{name}"]["outcome"] == "ingested", rows
        assert "6 files: 4 ingested, 1 already ingested, 1 rejected; download check passed" in text
        # And the stack stays up, with the variables to reach it printed
        env = dict(os.environ)
        env.update(dict(re.findall(r"^  export (\w+)=(\S+)$", text, re.MULTILINE)))
        assert {"API_ROOT", "AUTH_TOKEN", "BUCKET", "S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"} <= set(env)
        # So another tool can use it: the archive API answers with the token printed
        frames = requests.get(
            env["API_ROOT"] + "frames/",
            params={"basename_exact": real[0].split(".")[0]},
            headers={"Authorization": f"Token {env['AUTH_TOKEN']}"},
            timeout=10,
        ).json()
        assert frames["count"] == 1
        # And an upload to its landing bucket is ingested while it is kept
        name, data = new_frame_bytes
        s3 = boto3.client(
            "s3",
            endpoint_url=env["S3_ENDPOINT_URL"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
            region_name="us-east-1",
        )
        s3.put_object(Bucket=LANDING_BUCKET, Key=f"later/{name}", Body=data)
        row = out.until(lambda line: line.startswith(f"later/{name}"))
        assert re.split(r"\s{2,}", row)[1] == "ingested"
        # When interrupted, it stops cleanly
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0
        out.until(lambda line: line.startswith("stopping"), timeout=5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        out.thread.join(timeout=10)
        child.stdout.close()


@pytest.fixture
def new_frame_bytes() -> tuple[str, bytes]:
    from lambda_ingest.local import synthetic

    name = synthetic.frame_name(seq=4321)
    return name, synthetic.make_frame_bytes(synthetic.frame_name(seq=4321, ext=""), ".fits.fz", seed=4321)
