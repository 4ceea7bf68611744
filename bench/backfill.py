"""Backfill rates on the local stack: `lambda-ingest replay` (ingests here) against `replay --enqueue`
(only sends notifications; the deployed fleet ingests). Figures for docs/operations.md.

    python -m bench.backfill [--frames 200] [--objects 2000] [--concurrency 4]

Everything runs in this process against the embedded stack (moto's server and the archive emulator on
loopback), so the stack's own CPU competes with the command's: the figures are a floor for a workstation
talking to AWS, where S3, SQS and the archive run elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time

from lambda_ingest.cli import main
from lambda_ingest.local import synthetic
from lambda_ingest.local.stack import LANDING_BUCKET, LocalStack


def _timed(argv: list[str]) -> tuple[float, int]:
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    return time.perf_counter() - start, code


def run(frames: int, objects: int, concurrency: int) -> dict[str, float]:
    with LocalStack() as stack:
        stack.activate()
        s3, sqs = stack.client("s3"), stack.client("sqs")
        for seq in range(frames):
            name = synthetic.frame_name(seq=5000 + seq, ext="")
            body = synthetic.make_frame_bytes(name, ".fits.fz", seed=seq)
            s3.put_object(Bucket=LANDING_BUCKET, Key=f"bench-replay/{name}.fits.fz", Body=body)
        for i in range(objects):
            s3.put_object(Bucket=LANDING_BUCKET, Key=f"bench-enqueue/{i:07d}.fits.fz", Body=b"x")
        sqs.purge_queue(QueueUrl=stack.queue_url)  # the uploads' own notifications are not part of this
        replay_s, replay_code = _timed(
            ["replay", f"s3://{LANDING_BUCKET}/bench-replay/", "--concurrency", str(concurrency)]
        )
        target = sqs.create_queue(QueueName="bench-enqueue")["QueueUrl"]
        enqueue_s, enqueue_code = _timed(
            ["replay", "--enqueue", target, f"s3://{LANDING_BUCKET}/bench-enqueue/", "--concurrency", str(concurrency)]
        )
        sent = int(sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"])  # fmt: skip
        stack.deactivate()
    assert replay_code == 0 and enqueue_code == 0 and sent == objects, (replay_code, enqueue_code, sent)
    return {
        "replay_objects": frames,
        "replay_seconds": replay_s,
        "replay_per_second": frames / replay_s,
        "enqueue_objects": objects,
        "enqueue_seconds": enqueue_s,
        "enqueue_per_second": objects / enqueue_s,
        "load_average_1min": os.getloadavg()[0],
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    for name, value in run(args.frames, args.objects, args.concurrency).items():
        print(f"{name}\t{value:.2f}" if isinstance(value, float) else f"{name}\t{value}")


if __name__ == "__main__":
    cli()
