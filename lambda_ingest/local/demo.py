"""`lambda-ingest demo`: the whole flow on the embedded local stack, with a table of what happened.

Sample frames (synthetic, real LCO-style headers; plus any real frames given with --frames) are uploaded
to the local landing bucket; the bucket's notifications are read from the local SQS queue and handed to the
real Lambda handler; its outcome log lines fill the table.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests

from lambda_ingest.local import synthetic
from lambda_ingest.local.stack import LANDING_BUCKET, LocalStack


@dataclass
class Sample:
    key: str
    data: bytes
    note: str
    metadata: dict[str, str] | None = None


def sample_frames(quick: bool = False) -> list[Sample]:
    """Frames that show every outcome: new frames, a second version, a duplicate and two rejections."""
    raw = synthetic.frame_name(seq=73, ext="")
    fz = synthetic.make_frame_bytes(raw, ".fits.fz", data_bytes=256 * 1024, seed=1)
    experimental = synthetic.frame_name(
        site="coj", telnum=11, instrument="fl08", day="20151216", seq=48, obstype_letter="x", ext=""
    )
    bad = synthetic.frame_name(seq=99, ext="")
    samples = [
        Sample(f"raw/{raw}.fits.fz", fz, "raw frame, fpacked"),
        Sample(
            f"raw/{experimental}.fits.fz",
            synthetic.make_frame_bytes(experimental, ".fits.fz", data_bytes=128 * 1024, seed=2),
            "experimental frame (private by file type)",
        ),
        Sample(f"retry/{raw}.fits.fz", fz, "the same bytes uploaded again"),
        Sample(
            f"raw/{bad}.fits.fz",
            synthetic.make_frame_bytes(bad, ".fits.fz", header=synthetic.lco_header(bad, drop=("DAY-OBS",))),
            "header lacks DAY-OBS",
        ),
    ]
    if quick:
        return samples
    processed = synthetic.frame_name(
        site="lsc", telnum=5, instrument="kb78", day="20151109", seq=179, rlevel=91, ext=""
    )
    tarball = io.BytesIO()
    synthetic.write_tarball(tarball, seed=3)
    samples += [
        Sample(
            f"raw/{raw}.fits",
            synthetic.make_frame_bytes(raw, ".fits", data_bytes=2 * 1024 * 1024, seed=4),
            "the same frame uncompressed: a second version",
        ),
        Sample(
            f"processed/{processed}.fits.fz",
            synthetic.make_frame_bytes(processed, ".fits.fz", data_bytes=512 * 1024, seed=5),
            "processed frame",
        ),
        Sample(
            f"processed/{processed}_cat.fits.fz",
            synthetic.make_frame_bytes(processed + "_cat", ".fits.fz", seed=6),
            "source catalogue",
        ),
        Sample(f"spectra/{synthetic.DEFAULT_SPECTRUM_BASENAME}.tar.gz", tarball.getvalue(), "spectrum bundle"),
        Sample("raw/observing notes.fits", synthetic.random_bytes(8000), "not a FITS file"),
    ]
    return samples


def real_samples(folder: str) -> list[Sample]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name.endswith((".fits", ".fz", ".gz")))
    return [Sample(f"real/{p.name}", p.read_bytes(), "real frame") for p in paths]


class _OutcomeLog:
    """Reads the handler's structured log lines (one per outcome) from the Powertools logger's stream."""

    def __init__(self) -> None:
        from lambda_ingest.observability import logger

        self._handler = logger.registered_handler
        self._buffer = io.StringIO()

    def __enter__(self) -> _OutcomeLog:
        self._stream = self._handler.setStream(self._buffer)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handler.setStream(self._stream)

    def outcomes(self) -> list[dict[str, Any]]:
        lines = []
        for line in self._buffer.getvalue().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("outcome"):
                lines.append(entry)
        return lines


class _Context:
    function_name = "lambda-ingest-demo"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:lambda-ingest-demo"
    aws_request_id = "demo"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


def _progress(out: TextIO, text: str) -> None:
    """Rewrite one status line on a terminal; elsewhere (logs, CI) only the final state matters."""
    if out.isatty():
        out.write("\r" + text)
        out.flush()
    else:
        _progress.last = text  # type: ignore[attr-defined]


def _end_progress(out: TextIO) -> None:
    _say(out, "" if out.isatty() else getattr(_progress, "last", ""))


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def run_demo(frames_dir: str | None = None, keep: bool = False, out: TextIO = sys.stdout, quick: bool = False) -> int:
    started = time.perf_counter()
    _say(out, "lambda-ingest demo: embedded local stack (moto S3/SQS/DynamoDB + Science Archive emulator)")
    with LocalStack() as stack:
        stack.activate()
        assert stack.archive is not None
        _say(out, f"  S3/SQS endpoint   {stack.s3_server.endpoint_url}")
        _say(out, f"  archive API       {stack.archive.api_root}")
        samples = sample_frames(quick) + (real_samples(frames_dir) if frames_dir else [])
        by_key = {s.key: s for s in samples}
        s3 = stack.client("s3")
        for n, sample in enumerate(samples, 1):
            extra = {"Metadata": sample.metadata} if sample.metadata else {}
            s3.put_object(Bucket=LANDING_BUCKET, Key=sample.key, Body=sample.data, **extra)
            _progress(out, f"  uploading to s3://{LANDING_BUCKET}/  {n}/{len(samples)}")
        _end_progress(out)
        rows = _run_handler(stack, out, expected=len(samples))
        _print_table(rows, by_key, out)
        checked = _download_check(stack, rows, by_key, out)
        counts = Counter(r["outcome"] for r in rows)
        elapsed = time.perf_counter() - started
        summary = ", ".join(
            f"{counts[k]} {k.replace('_', ' ')}"
            for k in ("ingested", "already_ingested", "rejected", "skipped")
            if counts[k]
        )
        _say(out, f"{len(rows)} files: {summary}; download check {'passed' if checked else 'FAILED'}; {elapsed:.1f} s")
        if keep:
            _keep_running(stack, out)
        return 0 if checked and len(rows) == len(samples) else 1


def _run_handler(stack: LocalStack, out: TextIO, expected: int) -> list[dict[str, Any]]:
    from lambda_ingest.handler import handler

    rows: list[dict[str, Any]] = []
    # The handler's EMF metrics go to stdout in Lambda; here they would drown the table.
    with _OutcomeLog() as log, contextlib.redirect_stdout(io.StringIO()):
        for _ in range(100):  # bounded: each pass takes up to 10 messages
            event = stack.queued_event()
            if event is None:
                break
            response = handler(event, _Context())
            stack.acknowledge(event, response.get("batchItemFailures", []))
            rows = log.outcomes()
            _progress(out, f"  handler: {len(rows)}/{expected} objects processed")
    _end_progress(out)
    return rows


def _key_of(row: dict[str, Any]) -> str:
    return row.get("key") or row.get("object", "").split("/", 3)[-1]


def _print_table(rows: list[dict[str, Any]], samples: dict[str, Sample], out: TextIO) -> None:
    header = ("file", "outcome", "archive key / reason", "version id", "md5", "frame", "ms")
    table = []
    for row in sorted(rows, key=_key_of):
        ms = sum((row.get("durations_ms") or {}).values())
        detail = row.get("archive_key") or row.get("reason", "")
        table.append(
            (
                _key_of(row),
                row["outcome"],
                detail,
                row.get("version_id") or "-",
                row.get("md5") or "-",
                str(row.get("frame_id") or "-"),
                f"{ms:.0f}" if ms else "-",
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    _say(out, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    _say(out, "  ".join("-" * w for w in widths))
    for r in table:
        _say(out, "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def _download_check(stack: LocalStack, rows: list[dict[str, Any]], samples: dict[str, Sample], out: TextIO) -> bool:
    """Follow a registered frame's download URL and compare the bytes with what was uploaded."""
    assert stack.archive is not None
    for row in rows:
        if row["outcome"] != "ingested" or _key_of(row) not in samples:
            continue
        frame = requests.get(f"{stack.archive.api_root}frames/{row['frame_id']}/", timeout=10).json()
        # A frame's url is its newest version (a .fits and .fits.fz of one basename share a frame).
        if frame["version_set"][0]["key"] == row["version_id"]:
            break
    else:
        return False
    body = requests.get(frame["url"], timeout=30).content
    same = hashlib.md5(body).hexdigest() == hashlib.md5(samples[_key_of(row)].data).hexdigest()
    _say(
        out,
        f"download check: frames/{row['frame_id']}/ url returns {len(body)} bytes, "
        f"{'identical to' if same else 'DIFFERENT from'} the uploaded {_key_of(row)}",
    )
    return same


def _keep_running(stack: LocalStack, out: TextIO) -> None:
    _say(out, "\nThe stack stays up (Ctrl-C to stop). Point other tools at it with:")
    for name, value in stack.environment().items():
        _say(out, f"  export {name}={value}")
    _say(out, f"  # landing bucket s3://{LANDING_BUCKET}, queue {stack.queue_url}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _say(out, "stopping")
