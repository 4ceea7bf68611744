"""Bad inputs, generated here: each is a permanent, explained rejection, and its bytes stay in the landing bucket.

A rejection is not retried: the record succeeds (no batch item failure), the landing object is tagged
`ingest-status=rejected` and `ingest-reason=<why>`, an ERROR line and a FilesRejected{reason} metric say so.
One batch mixes every bad input with good files (some under awkward keys): the good ones ingest.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import tracemalloc
from typing import Any

import pytest

from lambda_ingest.handler import handler
from lambda_ingest.local import synthetic as sy
from tests.conftest import LANDING
from tests.reliability.support import assert_exactly_once, landing_keys, record_figures, upload

REQUIRED = ("PROPID", "DATE-OBS", "DAY-OBS", "INSTRUME", "SITEID", "TELID", "OBSTYPE", "BLKUID")


def name(seq: int) -> str:
    return sy.frame_name(seq=seq, ext="")


def frame(seq: int, ext: str = ".fits", **header: Any) -> bytes:
    basename = name(seq)
    values = {k: (v, "") for k, v in header.items()}  # no comment: long values must not warn
    return sy.make_frame_bytes(basename, ext, data_bytes=2048, seed=seq, header=sy.lco_header(basename, **values))


def without(seq: int, keyword: str) -> bytes:
    basename = name(seq)
    return sy.make_frame_bytes(basename, ".fits", data_bytes=2048, header=sy.lco_header(basename, drop=(keyword,)))


def in_value(data: bytes, keyword: bytes, inserted: bytes) -> bytes:
    """`data` with `inserted` put at the start of the string value of the card `keyword`."""
    card = keyword.ljust(8) + b"= '"
    assert card in data
    return data.replace(card, card + inserted, 1)


def tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, payload in members:
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    """key -> (bytes, a phrase the rejection's reason must contain)."""
    cases: dict[str, tuple[bytes, str]] = {
        f"{name(1)}.fits": (b"", "the object is empty"),
        f"{name(2)}.fits": (sy.random_bytes(3 * 2880, seed=2), "not a FITS file"),
        f"{name(3)}.fits": (sy.header_without_end(name(3)), "no END card"),
        f"{name(4)}.fits": (sy.truncated_data_frame(name(4)), "data unit is truncated"),
        f"{name(5)}.fits": (sy.huge_header_frame(10_000, basename=name(5)), "more than 5000 header cards"),
        f"{name(6)}.fits": (in_value(frame(6), b"OBJECT", "é".encode("latin-1")), "non-ASCII or control characters"),
        f"{name(7)}.fits": (in_value(frame(7), b"OBJECT", b"\x07\x1b[2J"), "non-ASCII or control characters"),
        f"{name(8)}.xyz": (frame(8), "unsupported file type"),
        f"{name(9)}.fits": (frame(9, INSTRUME="k" * 65), "instrument_id"),
        f"{name(10)}.fits": (frame(10, OBJECT="o" * 201), "target_name"),
        f"{name(11)}.fits": (frame(11, SITEID="cptx"), "site_id"),
        "frame_without_a_hint.fits": (
            sy.make_frame_bytes(
                "frame_without_a_hint", ".fits", data_bytes=2048, header=_unknown("frame_without_a_hint")
            ),
            "OBSTYPE is missing, blank or UNKNOWN",
        ),
        "frame_without_a_hint.fits.fz": (
            sy.make_frame_bytes(
                "frame_without_a_hint", ".fits.fz", data_bytes=2048, header=_unknown("frame_without_a_hint")
            ),
            "OBSTYPE is UNKNOWN and could not be inferred",
        ),
        f"{sy.DEFAULT_SPECTRUM_BASENAME}.tar.gz": (
            tar_gz([("README.txt", b"no FITS in here\n"), ("spectrum.csv", b"wavelength,flux\n")]),
            "the tar file has no FITS member",
        ),
        "n" * 1010 + ".fits": (frame(12), "basename"),
    }
    for seq, keyword in enumerate(REQUIRED, start=20):
        cases[f"{name(seq)}.fits"] = (without(seq, keyword), f"missing required header {keyword}")
    return cases


def _unknown(basename: str) -> Any:
    return sy.lco_header(basename, OBSTYPE="UNKNOWN")


def good_inputs() -> dict[str, tuple[str, str, bytes]]:
    """key -> (basename, extension, bytes): good frames, several under keys S3 URL-encodes in events."""
    prefixes = ["", "with space/", "plus+sign/", "percent%25 and %/", "ünïcødé ☃/"]
    cases = {}
    for seq, prefix in enumerate(prefixes, start=40):
        cases[f"{prefix}{name(seq)}.fits.fz"] = (name(seq), ".fits.fz", frame(seq, ".fits.fz"))
    long_name = f"{name(50)}.fits"
    cases["d" * (1023 - len(long_name)) + "/" + long_name] = (name(50), ".fits", frame(50))  # a 1 KB key
    return cases


def tags(s3: Any, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=LANDING, Key=key)["TagSet"]}


def test_a_batch_mixing_bad_and_good_files_ingests_the_good_and_rejects_the_bad(
    s3, archive_api, queue, context, logs, capsys
) -> None:
    # Given every bad input and some good frames (under awkward keys) in the landing bucket
    bad, good = bad_inputs(), good_inputs()
    assert len("".join(next(k for k in good if k.startswith("ddd"))).encode()) == 1024
    for key, (data, _) in bad.items():
        s3.put_object(Bucket=LANDING, Key=key, Body=data)
    for key, (_, _, data) in good.items():
        s3.put_object(Bucket=LANDING, Key=key, Body=data)
    capsys.readouterr()
    # When SQS delivers every notification (batches of 10, redelivering any reported failure)
    invocations = queue.deliver_all(handler, context)
    # Then no record was reported failed: nothing is retried, nothing goes to the DLQ
    assert [i.failed for i in invocations] == [[]] * len(invocations)
    assert queue.dead_letters() == []
    # And every good file is registered exactly once; only the bad files stay in the landing bucket
    assert_exactly_once(s3, archive_api, list(good.values()), landing_left=list(bad))
    # And each bad file keeps its exact bytes and carries the reason, in its tag and in one ERROR line
    rejected = {line["object"]: line for line in logs.with_message("rejected")}
    for key, (data, phrase) in bad.items():
        assert s3.get_object(Bucket=LANDING, Key=key)["Body"].read() == data
        tag = tags(s3, key)
        assert tag["ingest-status"] == "rejected"
        line = rejected[f"s3://{LANDING}/{key}"]
        assert line["level"] == "ERROR" and phrase in line["reason"], (key[:60], line["reason"])
        assert tag["ingest-reason"] == _tag_value(line["reason"])
    # And the rejections were counted by reason (EMF), never as transient failures
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    reasons = [m["reason"] for m in metrics if "FilesRejected" in m]
    assert len(reasons) == len(bad)
    assert set(reasons) <= {"invalid_file", "invalid_record"}
    assert not [m for m in metrics if "TransientFailures" in m]
    # And no request reached the archive for a bad file, so it never answered a 500
    assert not [r for r in archive_api.requests_seen if r[2] is not None and r[2] >= 500]
    posted = [v["basename"] for v in archive_api.versions()]
    assert len(posted) == len(good)


def test_a_rejection_delivered_again_is_rejected_again_and_not_retried(s3, archive_api, queue, context) -> None:
    # Given a bad file already rejected once
    key = f"{name(3)}.fits"
    s3.put_object(Bucket=LANDING, Key=key, Body=sy.header_without_end(name(3)))
    [message] = queue.receive()
    first = handler(queue.event([message]), context)
    # When SQS delivers the same message again (at-least-once delivery)
    second = handler(queue.event([message]), context)
    # Then it is rejected the same way, still not reported failed, and its bytes stay
    assert first == second == {"batchItemFailures": []}
    assert tags(s3, key)["ingest-status"] == "rejected"
    assert landing_keys(s3) == [key]


def test_header_value_over_the_archive_limit_is_refused_before_any_copy_or_post(
    s3, archive_api, queue, context
) -> None:
    # Given a frame whose INSTRUME is longer than the archive's 64-character instrument_id
    key = f"{name(9)}.fits"
    s3.put_object(Bucket=LANDING, Key=key, Body=frame(9, INSTRUME="k" * 65))
    # When it is delivered
    queue.deliver_all(handler, context)
    # Then the reason names the field and the limit; nothing was copied and nothing was posted
    assert tags(s3, key)["ingest-reason"].startswith("instrument_id")
    assert "at most 64" in tags(s3, key)["ingest-reason"]
    assert s3.list_object_versions(Bucket="archive-bucket").get("Versions", []) == []
    assert not [r for r in archive_api.requests_seen if r[0] == "POST"]


def test_target_name_up_to_the_archives_200_characters_ingests(s3, archive_api, queue, context) -> None:
    # Given a frame whose OBJECT is 150 characters (the archive's target_name holds 200)
    files = {(name(13), ".fits"): frame(13, OBJECT="o" * 150)}
    upload(s3, files)
    # When it is delivered, Then it is registered, with the whole name
    queue.deliver_all(handler, context)
    assert_exactly_once(s3, archive_api, files)
    assert archive_api.frames()[0]["target_name"] == "o" * 150


# --------------------------------------------------------------------------------------------------------
# Gzip bombs: bounded work and memory
# --------------------------------------------------------------------------------------------------------


class _Zeros(io.RawIOBase):
    def readinto(self, b: Any) -> int:
        b[: len(b)] = bytes(len(b))
        return len(b)


def padding_first_bomb(padding: int) -> bytes:
    """A .tar.gz whose first member is `padding` zero bytes (compressing ~230:1), then a valid frame."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1, copybufsize=1 << 20) as tar:
        info = tarfile.TarInfo("padding.bin")
        info.size = padding
        tar.addfile(info, _Zeros())
        basename = sy.DEFAULT_SPECTRUM_BASENAME
        meta = sy.make_frame_bytes(basename, ".fits", data_bytes=2048)
        info = tarfile.TarInfo(f"{basename}.fits")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return buf.getvalue()


def ingest_measured(key: str) -> tuple[Any, float, int]:
    """ingest_object(key) -> (result or the error, seconds, peak traced memory in bytes)."""
    from lambda_ingest.errors import IngestError
    from lambda_ingest.ingest import ingest_object

    tracemalloc.start()
    start = time.perf_counter()
    try:
        outcome: Any = ingest_object(LANDING, key)
    except IngestError as exc:
        outcome = exc
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return outcome, seconds, peak


def test_gzip_bomb_hiding_the_fits_member_is_rejected_at_the_scan_limit_with_bounded_memory(s3, archive_api) -> None:
    from lambda_ingest.errors import InvalidFileError
    from lambda_ingest.settings import get_settings

    # Given a 300 MiB-when-inflated padding member (about 1.3 MB compressed) before the FITS member, past
    # the default TAR_MAX_SCAN_BYTES (256 MiB)
    limit = get_settings().tar_max_scan_bytes
    data = padding_first_bomb(300 * 1024 * 1024)
    assert len(data) < 2 * 1024 * 1024
    key = f"{sy.DEFAULT_SPECTRUM_BASENAME}.tar.gz"
    s3.put_object(Bucket=LANDING, Key=key, Body=data)
    # When it is ingested
    outcome, seconds, peak = ingest_measured(key)
    # Then it is a permanent rejection naming the limit; memory stayed small, the inflated bytes bounded
    record_figures(
        "bomb_padding_first",
        {"compressed_bytes": len(data), "seconds": round(seconds, 2), "peak_mib": round(peak / 2**20, 1)},
    )
    assert isinstance(outcome, InvalidFileError)
    assert "TAR_MAX_SCAN_BYTES" in outcome.reason or f"scan limit of {limit}" in outcome.reason
    assert peak < 32 * 1024 * 1024
    assert seconds < 30


def test_gzip_bomb_whose_fits_header_comes_first_costs_only_its_header(s3, archive_api) -> None:
    # Given a .tar.gz inflating to over 1 GiB (1 MB compressed): a valid frame header, then a zero-filled
    # data unit. Valid by every rule the archive has: the ingester has no reason to reject it, and never
    # inflates past the header it needs
    data = io.BytesIO()
    sy.gzip_bomb(data, 1024**3)
    key = f"{sy.DEFAULT_SPECTRUM_BASENAME}.tar.gz"
    s3.put_object(Bucket=LANDING, Key=key, Body=data.getvalue())
    # When it is ingested
    outcome, seconds, peak = ingest_measured(key)
    # Then it is ingested having read a few compressed KB, in bounded time and memory
    record_figures(
        "bomb_header_first",
        {
            "compressed_bytes": len(data.getvalue()),
            "header_bytes_read": getattr(outcome, "header_bytes_read", None),
            "seconds": round(seconds, 2),
            "peak_mib": round(peak / 2**20, 1),
        },
    )
    assert outcome.status == "ingested", outcome
    assert outcome.header_bytes_read < 64 * 1024
    assert peak < 32 * 1024 * 1024
    assert seconds < 10


def _tag_value(reason: str) -> str:
    from lambda_ingest.store import tag_value

    return tag_value(reason)


@pytest.mark.parametrize("keyword", REQUIRED)
def test_each_missing_required_header_is_named(s3, archive_api, keyword: str) -> None:
    from lambda_ingest.errors import RecordError
    from lambda_ingest.ingest import ingest_object

    # Given a frame without `keyword`
    key = f"{name(60)}.fits"
    s3.put_object(Bucket=LANDING, Key=key, Body=without(60, keyword))
    # When it is ingested, Then the rejection names exactly that keyword, and nothing was copied
    with pytest.raises(RecordError, match=f"missing required header {keyword}$"):
        ingest_object(LANDING, key)
    assert s3.list_object_versions(Bucket="archive-bucket").get("Versions", []) == []
