"""The benchmark's S3 model: every S3 request pays the latency, bodies the connection rate, copies the copy rate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from bench.model import S3Model
from lambda_ingest.local.s3 import LocalS3Server

MODEL = S3Model(first_byte_s=0.05, connection_rate=20e6, copy_rate=10e6)
SIZE = 2_000_000


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with LocalS3Server(middleware=MODEL) as server:
        client = boto3.client(
            "s3", endpoint_url=server.endpoint_url, region_name="us-east-1", aws_access_key_id="x",
            aws_secret_access_key="x", config=Config(request_checksum_calculation="when_required"),
        )  # fmt: skip
        client.create_bucket(Bucket="model-bucket")
        client.put_object(Bucket="model-bucket", Key="frame.fits", Body=b"\0" * SIZE)
        yield client


def timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def test_every_request_waits_the_first_byte_latency(s3: Any) -> None:
    assert timed(lambda: s3.head_object(Bucket="model-bucket", Key="frame.fits")) >= MODEL.first_byte_s


def test_a_body_moves_at_the_connection_rate(s3: Any) -> None:
    # 2 MB at 20 MB/s: 0.1 s after the latency; a 200 KB range: a tenth of that
    whole = timed(lambda: s3.get_object(Bucket="model-bucket", Key="frame.fits")["Body"].read())
    assert whole >= MODEL.first_byte_s + SIZE / MODEL.connection_rate
    part = timed(lambda: s3.get_object(Bucket="model-bucket", Key="frame.fits", Range="bytes=0-199999")["Body"].read())
    assert MODEL.first_byte_s + 200_000 / MODEL.connection_rate <= part < whole


def test_a_copy_lasts_its_bytes_at_the_copy_rate(s3: Any) -> None:
    source = {"Bucket": "model-bucket", "Key": "frame.fits"}
    copy = timed(lambda: s3.copy_object(Bucket="model-bucket", Key="copy.fits", CopySource=source))
    assert copy >= MODEL.first_byte_s + SIZE / MODEL.copy_rate
    upload = s3.create_multipart_upload(Bucket="model-bucket", Key="parts.fits")["UploadId"]
    part = timed(
        lambda: s3.upload_part_copy(
            Bucket="model-bucket", Key="parts.fits", UploadId=upload, PartNumber=1, CopySource=source,
            CopySourceRange="bytes=0-499999",
        )
    )  # fmt: skip
    assert MODEL.first_byte_s + 500_000 / MODEL.copy_rate <= part < copy
