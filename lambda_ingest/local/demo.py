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
import logging
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests

from lambda_ingest.context import LocalContext
from lambda_ingest.local import synthetic
from lambda_ingest.local.stack import ARCHIVE_BUCKET, LANDING_BUCKET, LocalStack


@dataclass
class Sample:
    key: str
    data: bytes
    note: str
    metadata: dict[str, str] | None = None


def sample_frames(quick: bool = False, seed: int = 0) -> list[Sample]:
    """Frames that show every outcome: new frames, a second version, a duplicate and two rejections.

    Another `seed` gives other data bytes (other md5s) under the same names and headers.
    """
    base = 10 * seed
    raw = synthetic.frame_name(seq=73, ext="")
    fz = synthetic.make_frame_bytes(raw, ".fits.fz", data_bytes=256 * 1024, seed=base + 1)
    experimental = synthetic.frame_name(
        site="coj", telnum=11, instrument="fl08", day="20151216", seq=48, obstype_letter="x", ext=""
    )
    bad = synthetic.frame_name(seq=99, ext="")
    samples = [
        Sample(f"raw/{raw}.fits.fz", fz, "raw frame, fpacked"),
        Sample(
            f"raw/{experimental}.fits.fz",
            synthetic.make_frame_bytes(experimental, ".fits.fz", data_bytes=128 * 1024, seed=base + 2),
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
    synthetic.write_tarball(tarball, seed=base + 3)
    samples += [
        Sample(
            f"raw/{raw}.fits",
            synthetic.make_frame_bytes(raw, ".fits", data_bytes=2 * 1024 * 1024, seed=base + 4),
            "the same frame uncompressed: a second version",
        ),
        Sample(
            f"processed/{processed}.fits.fz",
            synthetic.make_frame_bytes(processed, ".fits.fz", data_bytes=512 * 1024, seed=base + 5),
            "processed frame",
        ),
        Sample(
            f"processed/{processed}_cat.fits.fz",
            synthetic.make_frame_bytes(processed + "_cat", ".fits.fz", seed=base + 6),
            "source catalogue",
        ),
        Sample(f"spectra/{synthetic.DEFAULT_SPECTRUM_BASENAME}.tar.gz", tarball.getvalue(), "spectrum bundle"),
        Sample("raw/observing notes.fits", synthetic.random_bytes(8000), "not a FITS file"),
    ]
    return samples


def real_samples(folder: str) -> list[Sample]:
    """Every .fits, .fits.fz and .tar.gz under `folder`, keyed real/<path relative to folder>."""
    root = Path(folder)
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".fits", ".fits.fz", ".tar.gz")))
    return [Sample(f"real/{p.relative_to(root).as_posix()}", p.read_bytes(), "real frame") for p in paths]


class OutcomeLog:
    """Reads the handler's structured log lines (one per outcome) from the Powertools logger's stream."""

    def __init__(self) -> None:
        from lambda_ingest.observability import logger

        self._logger = logger
        self._handler = logger.registered_handler
        self._buffer = io.StringIO()

    def __enter__(self) -> OutcomeLog:
        self._stream = self._handler.setStream(self._buffer)
        self._level = self._logger.log_level
        self._logger.setLevel(logging.INFO)  # the outcome lines are INFO, whatever POWERTOOLS_LOG_LEVEL says
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._logger.setLevel(self._level)
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


class _Status:
    """One status line: rewritten in place on a terminal; elsewhere (logs, CI) only its final state is kept."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = bool(getattr(out, "isatty", lambda: False)())
        self.last = ""

    def update(self, text: str) -> None:
        self.last = text
        if self.live:
            self.out.write("\r\033[K" + text)
            self.out.flush()

    def done(self) -> None:
        _say(self.out, "" if self.live else self.last)


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def run_demo(frames_dir: str | None = None, keep: bool = False, out: TextIO = sys.stdout, quick: bool = False) -> int:
    """Run the demo; returns the exit code (0 when every file reached its outcome and the download matched)."""
    started = time.perf_counter()
    _say(out, "lambda-ingest demo: embedded local stack (moto S3/SQS/DynamoDB + Science Archive emulator)")
    samples = sample_frames(quick) + (real_samples(frames_dir) if frames_dir else [])
    by_key = {s.key: s for s in samples}
    with LocalStack() as stack:
        stack.activate()
        assert stack.archive is not None
        _say(out, f"  S3/SQS endpoint   {stack.s3_server.endpoint_url}")
        _say(out, f"  archive API       {stack.archive.api_root}")
        s3 = stack.client("s3")
        status = _Status(out)
        for n, sample in enumerate(samples, 1):
            extra = {"Metadata": sample.metadata} if sample.metadata else {}
            s3.put_object(Bucket=LANDING_BUCKET, Key=sample.key, Body=sample.data, **extra)
            status.update(f"  uploading to s3://{LANDING_BUCKET}/  {n}/{len(samples)}")
        status.done()
        rows = _run_handler(stack, _Status(out), expected=len(samples))
        _print_table(rows, out)
        checked = _download_check(stack, rows, by_key, out)
        _print_events(stack, out)
        elapsed = time.perf_counter() - started
        _say(out, f"{_summary(rows)}; download check {'passed' if checked else 'FAILED'}; {elapsed:.1f} s")
        code = 0 if checked and len(rows) == len(samples) else 1
        if keep:
            _keep_running(stack, out)
        return code


def _summary(rows: list[dict[str, Any]]) -> str:
    counts = Counter(r["outcome"] for r in rows)
    names = ("ingested", "already_ingested", "rejected", "skipped")
    parts = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in names if counts[k])
    return f"{len(rows)} files: {parts}"


def _run_handler(
    stack: LocalStack, status: _Status | None, expected: int | None = None, wait_seconds: int = 0
) -> list[dict[str, Any]]:
    """Hand the queued notifications to the real handler, as the event source mapping does; returns the
    outcome log lines. Stops when the queue is empty (after `wait_seconds` of long polling)."""
    from lambda_ingest.handler import handler

    rows: list[dict[str, Any]] = []
    # The handler's EMF metrics go to stdout in Lambda; here they would drown the table.
    with OutcomeLog() as log, contextlib.redirect_stdout(io.StringIO()):
        for _ in range(1000):  # bounded: each pass takes up to 10 messages
            event = stack.queued_event(wait_seconds=wait_seconds)
            if event is None:
                break
            response = handler(event, LocalContext(function_name="lambda-ingest-demo", timeout_s=300))
            stack.acknowledge(event, response.get("batchItemFailures", []))
            rows = log.outcomes()
            if status is not None:
                status.update(f"  handler: {len(rows)}/{expected or len(rows)} objects processed")
    if status is not None:
        status.done()
    return rows


def _key_of(row: dict[str, Any]) -> str:
    return row.get("key") or row.get("object", "").split("/", 3)[-1]


TABLE_HEADER = ("file", "outcome", "archive key / reason", "version id", "md5", "frame", "time")


def table_rows(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The table's cells, one tuple per outcome (sorted by landing key)."""
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
                f"{ms:.0f} ms" if ms else "-",
            )
        )
    return table


def _terminal_width(out: TextIO) -> int | None:
    """The terminal's width when `out` is one; None elsewhere (logs, pipes and tests get the full table)."""
    if not getattr(out, "isatty", lambda: False)():
        return None
    return shutil.get_terminal_size().columns


def _print_table(rows: list[dict[str, Any]], out: TextIO, header: bool = True, width: int | None = None) -> None:
    """One line per file with every column (about 230 characters); where that is wider than the terminal
    (`width`), two lines per file that fit 120: file, outcome, frame, time; then the archive key or reason
    with the version id and md5 shortened."""
    table = table_rows(rows)
    widths = [max(len(r[i]) for r in [TABLE_HEADER, *table]) for i in range(len(TABLE_HEADER))]
    width = _terminal_width(out) if width is None else width
    if width is None or sum(widths) + 2 * (len(widths) - 1) <= width:
        if header:
            table = [TABLE_HEADER, tuple("-" * w for w in widths), *table]
        for r in table:
            _say(out, "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        return
    first = (0, 1, 5, 6)  # file, outcome, frame, time
    if header:
        _say(out, "  ".join(TABLE_HEADER[i].ljust(widths[i]) for i in first).rstrip())
        _say(out, "    -> archive key / reason  version id  md5")
    for r in table:
        _say(out, "  ".join(r[i].ljust(widths[i]) for i in first).rstrip())
        detail = f"    -> {r[2]}"
        if r[3] != "-":
            detail += f"  version {_short(r[3])}  md5 {_short(r[4])}"
        _say(out, detail)


def _short(text: str, keep: int = 8) -> str:
    return text if len(text) <= keep + 1 else text[:keep] + "\u2026"


def _download_check(stack: LocalStack, rows: list[dict[str, Any]], samples: dict[str, Sample], out: TextIO) -> bool:
    """Follow a registered version's download URL and compare the bytes with what was uploaded."""
    assert stack.archive is not None
    for row in rows:
        if row["outcome"] != "ingested" or _key_of(row) not in samples:
            continue
        frames = requests.get(
            f"{stack.archive.api_root}frames/",
            params={"basename_exact": row["basename"]},
            headers={"Authorization": f"Token {stack.token}"},
            timeout=10,
        ).json()["results"]
        # Each version carries its own url, but the archive builds every one from the frame's current filename
        # (its newest version): an older version's url can 404 (an archive quirk). Check a newest version.
        urls = [f["version_set"][0].get("url") for f in frames if f["version_set"][0]["key"] == row["version_id"]]
        if urls and urls[0]:
            break
    else:
        return False
    body = requests.get(urls[0], timeout=30).content
    same = hashlib.md5(body).hexdigest() == hashlib.md5(samples[_key_of(row)].data).hexdigest()
    _say(
        out,
        f"download check: frame {row['frame_id']} version url returns {len(body)} bytes, "
        f"{'identical to' if same else 'DIFFERENT from'} the uploaded {_key_of(row)}",
    )
    return same


def _print_events(stack: LocalStack, out: TextIO) -> None:
    """The outcome events an EventBridge rule delivered to a subscriber queue (as a pipeline would get them)."""
    events = stack.received_events()
    _say(out, f"events published to EventBridge bus {stack.environment()['EVENT_BUS_NAME']}: {len(events)}")
    for event in events:
        detail = event.get("detail", {})
        what = detail.get("archive_key") or detail.get("reason") or ""
        _say(out, f"  {event.get('detail-type', '?'):<15} {detail.get('landing_key', '')}  {what}")


def _keep_running(stack: LocalStack, out: TextIO) -> None:
    """Leave the stack up and keep ingesting: every upload to the landing bucket is handed to the handler."""
    assert stack.archive is not None
    endpoint = stack.s3_server.endpoint_url
    _say(out, "")
    _say(out, "The stack stays up (Ctrl-C to stop). Point other tools at it with:")
    for name, value in stack.environment().items():
        _say(out, f"  export {name}={value}")
    _say(out, f"  # landing bucket s3://{LANDING_BUCKET}   queue {stack.queue_url}   dead-letter queue {stack.dlq_url}")
    _say(out, f"  # archive bucket s3://{ARCHIVE_BUCKET}   frames {stack.archive.api_root}frames/")
    _say(out, f"  # outcome events (EventBridge rule -> SQS) {stack.events_queue_url}")
    folder = "/tmp/lambda-ingest-samples"
    frame = f"{folder}/raw/{synthetic.frame_name(seq=73)}"
    _say(out, "Try, in another shell after the exports:")
    _say(out, f"  lambda-ingest samples {folder}       # writes sample frames (new bytes each time)")
    _say(out, f"  lambda-ingest ingest --check-only {frame}")
    _say(out, f"  aws --endpoint-url {endpoint} s3 cp {frame} s3://{LANDING_BUCKET}/raw/   # ingested here, as in AWS")
    _say(out, f"Watching s3://{LANDING_BUCKET}/ for uploads...")
    seen = 0
    try:
        while True:
            rows = _run_handler(stack, None, wait_seconds=1)
            if rows:
                _print_table(rows, out, header=False)
                seen += len(rows)
    except KeyboardInterrupt:
        _say(out, f"stopping ({seen} more file{'s' if seen != 1 else ''} ingested while kept)")
