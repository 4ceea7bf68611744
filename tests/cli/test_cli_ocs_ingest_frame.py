"""`ocs_ingest_frame`: ocs_ingester's script, same arguments and output, honest exit codes."""

from __future__ import annotations

import argparse

import pytest
import requests

from lambda_ingest.cli import ocs_ingest_frame
from tests.cli.conftest import archive_frames, basename


def test_prints_only_the_url_and_exits_0_also_when_already_ingested(cli, new_frame, in_process, capsys) -> None:
    path = new_frame()
    # When a new frame is ingested: its URL, alone, on stdout
    run = cli.run(path, program="ocs_ingest_frame")
    assert run.returncode == 0, run.stdout + run.stderr
    [url] = run.stdout.splitlines()
    assert requests.get(url, timeout=10).content == path.read_bytes()
    # When it is ingested again: still its URL and exit 0 (ocs_ingester printed a message instead)
    with pytest.raises(SystemExit) as done:
        ocs_ingest_frame([str(path)])
    assert done.value.code == 0
    assert capsys.readouterr().out.split("?")[0] == url.split("?")[0]


def test_check_only_prints_true_or_false(stack, new_frame, in_process, capsys) -> None:
    held, fresh = new_frame(), new_frame()
    with pytest.raises(SystemExit) as done:
        ocs_ingest_frame([str(held)])
    assert done.value.code == 0
    capsys.readouterr()

    with pytest.raises(SystemExit) as done:
        ocs_ingest_frame(["--check-only", str(held)])
    assert (done.value.code, capsys.readouterr().out) == (0, "True\n")

    with pytest.raises(SystemExit) as done:
        ocs_ingest_frame(["--check-only", str(fresh)])
    assert (done.value.code, capsys.readouterr().out) == (1, "False\n")
    assert basename(fresh) not in archive_frames(stack)


def test_a_rejected_file_exits_1_with_ocs_ingesters_message(new_frame, in_process, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        ocs_ingest_frame([str(new_frame(drop=("DAY-OBS",)))])
    assert done.value.code == 1
    assert capsys.readouterr().out == "Exception uploading file: missing required header DAY-OBS\n"


def test_an_archive_error_exits_1_where_ocs_ingester_exited_0(new_frame, in_process, monkeypatch, capsys) -> None:
    # A 503 on the registration: ocs_ingester would have said so and (for some errors) exited 0
    in_process.archive.inject(status=503, method="POST", path_prefix="frames/")
    with pytest.raises(SystemExit) as done:
        ocs_ingest_frame([str(new_frame())])
    assert done.value.code == 1
    assert "archive answered 503" in capsys.readouterr().out


def test_check_only_of_a_missing_file_answers_false(tmp_path, in_process, capsys) -> None:
    # The answer (False, exit 1) on stdout as for any file the archive does not hold; why on stderr
    missing = tmp_path / "missing.fits"
    with pytest.raises(SystemExit) as done:
        ocs_ingest_frame(["--check-only", str(missing)])
    assert (done.value.code, capsys.readouterr()) == (
        1,
        ("False\n", f"ocs_ingest_frame: error: {missing}: No such file or directory\n"),
    )


def test_a_bad_setting_is_one_line_and_exit_2(cli, new_frame) -> None:
    run = cli.run(new_frame(), program="ocs_ingest_frame", HTTP_READ_TIMEOUT="abc")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "ocs_ingest_frame: error: HTTP_READ_TIMEOUT must be a number, got 'abc'\n"


def test_accepts_every_argument_of_ocs_ingesters_script(monkeypatch) -> None:
    # Given ocs_ingester 3.2.0's own parser (captured as its main() parses)
    monkeypatch.setenv("OPENTSDB_PYTHON_METRICS_TEST_MODE", "1")  # its metrics module must not look up a host
    from ocs_ingester.scripts import ingest_frame

    captured: list[argparse.ArgumentParser] = []

    class Captured(Exception):
        pass

    def capture(parser: argparse.ArgumentParser, *args, **kwargs):
        captured.append(parser)
        raise Captured

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(Captured):
        ingest_frame.main()
    with pytest.raises(Captured):
        ocs_ingest_frame([])
    theirs, ours = captured

    # Then ours has the same positional argument and every option
    def options(parser: argparse.ArgumentParser) -> set[tuple[str, ...]]:
        return {tuple(action.option_strings) or (action.dest,) for action in parser._actions}

    assert options(theirs) <= options(ours)
