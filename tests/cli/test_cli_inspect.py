"""`lambda-ingest inspect`: the record and canonical key a file would get, with nothing written anywhere."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from lambda_ingest.cli import main
from lambda_ingest.local.stack import ARCHIVE_BUCKET, LANDING_BUCKET
from tests.cli.conftest import archive_frames, archive_versions, basename, lines


def test_inspect_shows_the_effect_of_header_mapping_variables(cli, stack, new_frame) -> None:
    # Given a frame, and ocs_archive's DAYS_UNTIL_PUBLIC changed from its default of 365
    path = new_frame(data_bytes=256 * 1024)
    frames, written = archive_frames(stack), archive_versions(stack)
    # When it is inspected
    run = cli.run("inspect", path, DAYS_UNTIL_PUBLIC="30")
    # Then the report names the canonical key and the record ocs_archive built under that setting
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["archive_key"] == f"s3://{ARCHIVE_BUCKET}/cpt/kb70/20151219/raw/{path.name}"
    assert report["endpoint"] == "frames/"
    assert report["content_type"] == "image/fits"
    assert 0 < report["header_bytes_read"] < path.stat().st_size
    record = report["record"]
    assert record["basename"] == basename(path)
    assert (record["site_id"], record["instrument_id"], record["configuration_type"]) == ("cpt", "kb70", "EXPOSE")
    observed = datetime.fromisoformat(record["observation_date"])
    assert datetime.fromisoformat(record["public_date"]) == observed + timedelta(days=30)
    assert list(record)[-1] == "headers"  # the mapped fields first, the long header dump last
    # And nothing was written
    assert archive_frames(stack) == frames
    assert archive_versions(stack) == written


def test_inspect_an_object_in_the_landing_bucket_reads_it_in_place(stack, new_frame, in_process, capsys) -> None:
    path = new_frame()
    s3 = stack.client("s3")
    key = f"inspect/{path.name}"
    s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=path.read_bytes())
    written = archive_versions(stack)

    assert main(["inspect", f"s3://{LANDING_BUCKET}/{key}", "--bucket", "other-archive"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["archive_key"] == f"s3://other-archive/cpt/kb70/20151219/raw/{path.name}"
    assert report["record"]["basename"] == basename(path)
    # The landing object is untouched (still there, not tagged), the archive bucket too
    assert s3.get_object(Bucket=LANDING_BUCKET, Key=key)["Body"].read() == path.read_bytes()
    assert s3.get_object_tagging(Bucket=LANDING_BUCKET, Key=key)["TagSet"] == []
    assert archive_versions(stack) == written


def test_inspect_names_the_problem_and_exits_1(new_frame, in_process, capsys) -> None:
    bad = new_frame(drop=("DAY-OBS",))
    assert main(["inspect", str(bad)]) == 1
    assert lines(capsys.readouterr().out) == [[str(bad), "rejected", "missing required header DAY-OBS"]]

    assert main(["inspect", f"s3://{LANDING_BUCKET}/no/such/object.fits.fz"]) == 1
    [[_, status, reason]] = lines(capsys.readouterr().out)
    assert (status, reason.split(":")[-1].strip()) == ("failed", "no such object or version")


def test_inspect_of_a_missing_bucket_names_the_bucket(in_process, capsys) -> None:
    # (not "no such object": the bucket's name is what to fix)
    assert main(["inspect", "s3://no-such-landing-bucket/a/frame.fits.fz"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "lambda-ingest: error: no such bucket no-such-landing-bucket: check its name "
        "(and S3_ENDPOINT_URL for a local S3)\n"
    )


def test_inspect_needs_a_key_in_an_s3_url(capsys) -> None:
    # A usage error: the usage and one error line on stderr, no result line on stdout
    with pytest.raises(SystemExit) as done:
        main(["inspect", f"s3://{LANDING_BUCKET}"])
    assert done.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == (
        f"lambda-ingest inspect: error: expected s3://bucket/key (an object, not a bucket), got 's3://{LANDING_BUCKET}'"
    )


def test_inspect_help_describes_every_option(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--metadata KEY=VALUE record metadata for files without FITS headers" in help_text


@pytest.mark.parametrize("argv", [["inspect"], ["inspect", "a", "b"]])
def test_inspect_takes_exactly_one_target(argv) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
