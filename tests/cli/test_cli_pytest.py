"""The test suite's own command line, as docs/local-development.md tells a newcomer to run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, real_frames, shared_fixtures_dir


def test_plain_pytest_collects_the_cli_tests() -> None:
    # (`python -m pytest` is how `make test` runs this very suite: it needs no test of its own)
    # Given an activated virtual environment (its bin first on PATH) and no PYTHONPATH
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # When the suite's helpers are imported (`from tests.cli.conftest import ...`) at collection
    run = subprocess.run(
        ["pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/cli/test_cli_inspect.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then it collects without import errors
    assert run.returncode == 0, run.stdout + run.stderr
    assert "error" not in run.stdout.lower()


def test_fixtures_variable_may_name_the_fits_folder_itself(tmp_path, monkeypatch) -> None:
    frames = tmp_path / "fixtures" / "fits"
    frames.mkdir(parents=True)
    (frames / "cpt1m010-kb70-20151219-0073-e00.fits.fz").write_bytes(b"")
    for value in (tmp_path / "fixtures", frames):
        monkeypatch.setenv("LAMBDA_INGEST_FIXTURES", str(value))
        assert shared_fixtures_dir() == tmp_path / "fixtures"
        assert real_frames() == [frames / "cpt1m010-kb70-20151219-0073-e00.fits.fz"]


def test_without_real_frames_the_skip_says_how_to_provide_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LAMBDA_INGEST_FIXTURES", str(tmp_path / "nowhere"))
    [case] = real_frames()
    [mark] = case.marks
    expected = f"no real frames in {tmp_path / 'nowhere' / 'fits'}: set LAMBDA_INGEST_FIXTURES"
    assert mark.kwargs["reason"].startswith(expected)
