"""`lambda-ingest samples DIR`: frames a newcomer can try the other commands on; the demo's table on a terminal."""

from __future__ import annotations

import io
import json
import sys

import pytest

from lambda_ingest.cli import main
from lambda_ingest.local import demo
from tests.cli.conftest import archive_frames, lines


def test_samples_are_frames_the_other_commands_take(stack, in_process, tmp_path, capsys) -> None:
    # Given a newcomer with no frame of their own
    folder = tmp_path / "samples"
    # When the samples are written
    assert main(["samples", str(folder), "--quick", "--seed", "7"]) == 0
    out, err = capsys.readouterr()
    # Then stdout lists each file written with what it shows; stderr says what to try next
    written = {row[0]: row[1] for row in lines(out)}
    assert len(written) == 4
    assert all((folder / path).is_file() for path in written)
    assert "header lacks DAY-OBS" in written.values()
    assert "lambda-ingest ingest --check-only" in err
    raw = next(path for path, what in written.items() if what == "raw frame, fpacked")
    # And the other commands take them: inspect builds the record, ingest --check-only and ingest run on them
    assert main(["inspect", raw]) == 0
    assert json.loads(capsys.readouterr().out)["record"]["basename"] in raw
    assert main(["ingest", "--check-only", raw]) == 1
    assert main(["ingest", *written]) == 1  # the one lacking DAY-OBS is rejected
    statuses = sorted(row[1] for row in lines(capsys.readouterr().out))
    assert statuses == ["already_ingested", "ingested", "ingested", "not_in_archive", "rejected"]
    assert len(archive_frames(stack)) >= 2


def test_samples_with_the_same_seed_are_the_same_bytes_and_a_new_seed_new_ones(tmp_path, capsys) -> None:
    for folder, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["samples", str(tmp_path / folder), "--quick", "--seed", seed]) == 0
    capsys.readouterr()
    name = "raw/cpt1m010-kb70-20151219-0073-e00.fits.fz"
    a, b, c = ((tmp_path / folder / name).read_bytes() for folder in "abc")
    assert a == b != c


def test_samples_into_a_file_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    target = tmp_path / "a-file"
    target.write_text("")
    assert main(["samples", str(target)]) == 2
    assert capsys.readouterr() == (
        "",
        f"lambda-ingest: error: {target} exists and is not a directory: give a new or existing folder\n",
    )


@pytest.mark.parametrize("argv", [["demo"], ["samples", "DIR"]], ids=["demo", "samples"])
def test_without_the_local_extra_demo_and_samples_say_how_to_get_it(argv, tmp_path, monkeypatch, capsys) -> None:
    # Given an install without the `local` extra (moto is not importable)
    monkeypatch.setitem(sys.modules, "moto", None)
    # When the command runs
    code = main([str(tmp_path / "samples") if arg == "DIR" else arg for arg in argv])
    # Then it stops with one line saying how to install the local stack, and writes nothing
    assert (code, capsys.readouterr()) == (
        2,
        (
            "",
            "lambda-ingest: error: this command needs the local stack (moto is not installed): "
            "pip install 'lambda-ingest[local]'\n",
        ),
    )
    assert not (tmp_path / "samples").exists()


def test_the_demo_table_fits_a_120_column_terminal() -> None:
    # Given the outcome rows of an ingested, a duplicate and a rejected file
    ingested = {
        "outcome": "ingested",
        "key": "processed/lsc1m005-kb78-20151109-0179-e91_cat.fits.fz",
        "archive_key": "lsc/kb78/20151109/processed/lsc1m005-kb78-20151109-0179-e91_cat.fits.fz",
        "version_id": "NQv9.9D6RswSsWv.wJbNviYUBTWxlLtD",
        "md5": "1ab72140ccbb075da981eac032dea1eb",
        "frame_id": 9,
        "durations_ms": {"copy": 35.0},
    }
    rows = [ingested, {**ingested, "key": "retry/x.fits.fz", "outcome": "already_ingested"}]
    rows.append({"outcome": "rejected", "object": "s3://landing/raw/bad.fits.fz", "reason": "missing DAY-OBS"})
    # When it is printed for a 120-column terminal, and for a log
    narrow, full = io.StringIO(), io.StringIO()
    demo._print_table(rows, narrow, width=120)
    demo._print_table(rows, full)
    # Then the terminal gets lines of at most 120 characters with every file, outcome and archive key
    text = narrow.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 120
    for row in rows:
        assert row.get("archive_key", row.get("reason", "")) in text
    assert "version NQv9.9D6\u2026  md5 1ab72140\u2026" in text
    # And a log keeps the full table, one line per file
    assert len(full.getvalue().splitlines()) == 2 + len(rows)
    assert ingested["md5"] in full.getvalue()
