"""`lambda-ingest ingest`: local files into the archive bucket and the archive, one result line per file."""

from __future__ import annotations

import hashlib
import json
import socket
from urllib.parse import urlsplit

import pytest
import requests

from lambda_ingest.cli import main
from lambda_ingest.local.stack import ARCHIVE_BUCKET
from tests.cli.conftest import archive_frames, archive_versions, basename, lines


def url_path(url: str) -> str:
    """A presigned URL without its signature and expiry."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query.split('&')[0]}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ingest_prints_a_line_per_file_and_exits_1_when_any_failed(
    cli, stack, new_frame, tmp_path, in_process, capsys
) -> None:
    # Given two good frames, one lacking DAY-OBS and a path that does not exist
    good_fz, good_fits = new_frame(), new_frame(ext=".fits")
    bad = new_frame(drop=("DAY-OBS",))
    missing = tmp_path / "cpt1m010-kb70-20151219-9999-e00.fits.fz"
    # When they are ingested in one command
    run = cli.run("ingest", good_fz, good_fits, bad, missing)
    # Then each file has its line: path, status, URL or reason; and the exit code reports the failures
    assert run.returncode == 1, run.stderr
    result = lines(run.stdout)
    assert [row[:2] for row in result] == [
        [str(good_fz), "ingested"],
        [str(good_fits), "ingested"],
        [str(bad), "rejected"],
        [str(missing), "failed"],
    ]
    assert result[2][2] == "missing required header DAY-OBS"
    assert result[3][2] == "No such file or directory"
    assert "4 files: 2 ingested, 1 rejected, 1 failed" in run.stderr
    # And each URL downloads exactly the bytes of its file, stored at the canonical key under a 32-char version
    for (_, _, url), path in zip(result[:2], (good_fz, good_fits), strict=True):
        assert requests.get(url, timeout=10).content == path.read_bytes()
        assert urlsplit(url).path == f"/{ARCHIVE_BUCKET}/cpt/kb70/20151219/raw/{path.name}"
    frames = archive_frames(stack)
    for path in (good_fz, good_fits):
        [version] = frames[basename(path)]["version_set"]
        assert version["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
        assert len(version["key"]) == 32
    assert basename(bad) not in frames

    # When the good files are ingested again
    written = archive_versions(stack)
    capsys.readouterr()
    code = main(["ingest", str(good_fz), str(good_fits)])
    # Then both are already ingested (exit 0) with the same URLs, and nothing new was written
    again = lines(capsys.readouterr().out)
    assert code == 0, again
    assert [row[1] for row in again] == ["already_ingested", "already_ingested"]
    assert [url_path(row[2]) for row in again] == [url_path(row[2]) for row in result[:2]]
    assert archive_versions(stack) == written


def test_check_only_exit_code_says_whether_the_archive_holds_the_file(stack, new_frame, in_process, capsys) -> None:
    held, fresh = new_frame(), new_frame()
    assert main(["ingest", str(held)]) == 0
    written = archive_versions(stack)

    # A file the archive holds: exit 0, with its URL
    capsys.readouterr()
    assert main(["ingest", "--check-only", str(held)]) == 0
    [[path, status, url]] = lines(capsys.readouterr().out)
    assert (path, status) == (str(held), "already_ingested")
    assert requests.get(url, timeout=10).content == held.read_bytes()

    # A file it does not hold: exit 1; one of each: exit 1
    assert main(["ingest", "--check-only", str(fresh), str(held)]) == 1
    assert [row[1] for row in lines(capsys.readouterr().out)] == ["not_in_archive", "already_ingested"]

    # And checking wrote nothing
    assert archive_versions(stack) == written
    assert basename(fresh) not in archive_frames(stack)


def test_check_only_needs_no_valid_headers(new_frame, in_process, capsys) -> None:
    # As ocs_ingester's check: name and md5 only, so a file the archive refuses is simply not held
    bad = new_frame(drop=("DAY-OBS", "SITEID"))
    assert main(["ingest", "--check-only", str(bad)]) == 1
    assert lines(capsys.readouterr().out) == [[str(bad), "not_in_archive", ""]]


def test_flags_win_over_the_environment(stack, new_frame, in_process, monkeypatch, capsys) -> None:
    from lambda_ingest.settings import reset_settings

    # Given an environment pointing at a dead archive with a wrong token and another bucket
    path = new_frame()
    assert stack.archive is not None
    monkeypatch.setenv("API_ROOT", f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.setenv("AUTH_TOKEN", "wrong")
    monkeypatch.setenv("BUCKET", "no-such-bucket")
    reset_settings()
    # When the flags name the right ones
    code = main(
        [
            "ingest",
            str(path),
            "--api-root",
            stack.archive.api_root,
            "--auth-token",
            stack.token,
            "--bucket",
            ARCHIVE_BUCKET,
            "--process-name",
            "cli-test",
        ]
    )
    # Then the flags are used
    out = capsys.readouterr().out
    assert code == 0, out
    assert lines(out)[0][1] == "ingested"
    assert basename(path) in archive_frames(stack)


def test_metadata_makes_a_record_for_a_non_fits_file(stack, in_process, capsys, tmp_path) -> None:
    # Given a PDF (no headers of its own) and the metadata ocs_ingester took as file_metadata
    pdf = tmp_path / "cpt1m010-kb70-20151219-0500-e92-summary.pdf"
    pdf.write_bytes(b"%PDF-1.4\n% lambda_ingest command line test\n%%EOF\n")
    metadata = {
        "PROPID": "LCO2015B-020",
        "DATE-OBS": "2015-12-19T20:00:00",
        "DAY-OBS": "20151219",
        "INSTRUME": "kb70",
        "SITEID": "cpt",
        "TELID": "1m0a",
        "OBSTYPE": "EXPOSE",
        "BLKUID": "123",
    }
    args = [arg for key, value in metadata.items() for arg in ("--metadata", f"{key}={value}")]
    # When it is ingested with --metadata
    assert main(["ingest", str(pdf), *args]) == 0
    # Then the archive has a frame for it, under the key ocs_archive gives a PDF
    [[_, status, url]] = lines(capsys.readouterr().out)
    assert status == "ingested"
    assert urlsplit(url).path.endswith("/cpt/kb70/20151219/raw/cpt1m010-kb70-20151219-0500-e92-summary.pdf")
    frame = archive_frames(stack)["cpt1m010-kb70-20151219-0500-e92-summary"]
    assert frame["proposal_id"] == "LCO2015B-020"
    assert frame["configuration_type"] == "EXPOSE"


def test_a_malformed_metadata_pair_is_a_usage_error(new_frame, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", str(new_frame()), "--metadata", "PROPID"])
    assert exit_info.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_an_unreachable_archive_fails_the_file_and_leaves_no_copy(stack, new_frame, in_process, capsys) -> None:
    path = new_frame()
    written = archive_versions(stack)
    code = main(["ingest", str(path), "--api-root", f"http://127.0.0.1:{closed_port()}/"])
    assert code == 1
    [[_, status, reason]] = lines(capsys.readouterr().out)
    assert status == "failed"
    assert "archive unreachable" in reason
    assert "will retry" not in reason  # nothing retries at the command line
    assert archive_versions(stack) == written


def test_no_token_anywhere_is_a_configuration_error_naming_the_variable(
    new_frame, in_process, monkeypatch, capsys
) -> None:
    from lambda_ingest.settings import reset_settings

    monkeypatch.delenv("AUTH_TOKEN")
    reset_settings()
    # Every file would fail the same way: one line on stderr, exit 2, nothing on stdout
    assert main(["ingest", str(new_frame()), str(new_frame())]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("lambda-ingest: error: ")
    assert "set AUTH_TOKEN or AUTH_TOKEN_SECRET_ARN" in line


def test_verbose_writes_the_engines_log_line_per_file_to_stderr(new_frame, in_process, capsys) -> None:
    good, bad = new_frame(), new_frame(drop=("DAY-OBS",))
    assert main(["ingest", "-v", str(good), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert [row[1] for row in lines(out)] == ["ingested", "rejected"]
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [(entry["outcome"], entry["path"]) for entry in logged] == [("ingested", str(good)), ("rejected", str(bad))]
    assert logged[0]["basename"] == basename(good)
    assert err.splitlines()[-1] == "2 files: 1 ingested, 1 rejected"
    # Without -v: results and the summary only
    assert main(["ingest", str(good)]) == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
