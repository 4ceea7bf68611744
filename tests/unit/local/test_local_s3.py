"""Local S3: moto issues AWS-style 32-character version ids, in process and as a server."""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import tracemalloc
from collections.abc import Iterator
from typing import Any

import moto.s3.models as moto_s3_models
import moto.s3.utils as moto_s3_utils
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from lambda_ingest.clients import new_session
from lambda_ingest.local.fast_gets import FastRangedGets
from lambda_ingest.local.s3 import (
    LocalS3Server,
    aws_style_version_ids,
    aws_style_version_ids_installed,
    install_aws_style_version_ids,
    uninstall_aws_style_version_ids,
)

VERSION_ID = re.compile(r"^[A-Za-z0-9._]{32}$")
BUCKET = "archive-bucket"


def versioned_operations(client: Any) -> dict[str, str]:
    """Every S3 call that creates a version: put, copy, multipart complete, delete marker."""
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    ids = {"put": client.put_object(Bucket=BUCKET, Key="a.fits", Body=b"one")["VersionId"]}
    ids["put again"] = client.put_object(Bucket=BUCKET, Key="a.fits", Body=b"two")["VersionId"]
    ids["copy"] = client.copy_object(Bucket=BUCKET, Key="b.fits", CopySource={"Bucket": BUCKET, "Key": "a.fits"})[
        "VersionId"
    ]
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="c.fits")["UploadId"]
    part = client.upload_part(Bucket=BUCKET, Key="c.fits", UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    ids["multipart"] = client.complete_multipart_upload(
        Bucket=BUCKET,
        Key="c.fits",
        UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )["VersionId"]
    deleted = client.delete_object(Bucket=BUCKET, Key="b.fits")
    assert deleted["DeleteMarker"] is True
    ids["delete marker"] = deleted["VersionId"]
    return ids


@pytest.fixture
def without_patch() -> Iterator[None]:
    """moto's own behaviour for one test, whatever earlier tests installed; restored afterwards."""
    was_installed = aws_style_version_ids_installed()
    uninstall_aws_style_version_ids()
    yield
    if was_installed:
        install_aws_style_version_ids()


def test_in_process_mock_issues_32_character_ids_for_every_versioning_call(without_patch: None) -> None:
    # Given the patch and an in-process moto
    with aws_style_version_ids(), mock_aws():
        client = new_session().client("s3", region_name="us-east-1")

        # When every version-creating call is made
        ids = versioned_operations(client)

        # Then each id is 32 URL-safe characters, unique, and S3 lists and serves them
        assert all(VERSION_ID.match(v) for v in ids.values()), ids
        assert len(set(ids.values())) == len(ids)
        listed = client.list_object_versions(Bucket=BUCKET)
        listed_ids = {v["VersionId"] for v in listed["Versions"]} | {m["VersionId"] for m in listed["DeleteMarkers"]}
        assert listed_ids == set(ids.values())
        body = client.get_object(Bucket=BUCKET, Key="a.fits", VersionId=ids["put"])["Body"].read()
        assert body == b"one"
        client.close()


def test_unversioned_buckets_still_have_no_version_ids(without_patch: None) -> None:
    # Given the patch and a bucket without versioning
    with aws_style_version_ids(), mock_aws():
        client = new_session().client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="landing-bucket")

        # When an object is put, Then there is no version id, as on AWS
        assert "VersionId" not in client.put_object(Bucket="landing-bucket", Key="k", Body=b"x")
        client.close()


def test_install_is_idempotent_and_the_context_restores_the_previous_state(without_patch: None) -> None:
    # Given moto's original generator
    original = moto_s3_models.random

    # When installed twice, Then it wraps once
    install_aws_style_version_ids()
    patched = moto_s3_models.random
    install_aws_style_version_ids()
    assert moto_s3_models.random is patched is not original
    assert aws_style_version_ids_installed()

    # When uninstalled twice, Then the original is back
    uninstall_aws_style_version_ids()
    uninstall_aws_style_version_ids()
    assert moto_s3_models.random is original

    # And a nested context leaves an outer installation in place
    with aws_style_version_ids():
        with aws_style_version_ids():
            pass
        assert moto_s3_models.random is not original
    assert moto_s3_models.random is original


# ------------------------------------------------------------------------------------------------ server


@pytest.fixture(scope="module")
def server() -> Iterator[LocalS3Server]:
    with LocalS3Server() as running:
        yield running


@pytest.fixture
def clean_server(server: LocalS3Server) -> LocalS3Server:
    server.reset()
    return server


def client_for(server: LocalS3Server, service: str) -> Any:
    return new_session().client(
        service,
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_server_issues_32_character_ids_for_every_versioning_call(clean_server: LocalS3Server) -> None:
    # Given boto3 pointed at the local server, on a free loopback port
    assert re.fullmatch(r"http://127\.0\.0\.1:[1-9]\d*", clean_server.endpoint_url)
    client = client_for(clean_server, "s3")

    # When every version-creating call is made over HTTP
    ids = versioned_operations(client)

    # Then each id is AWS-style and can be used to read that version back
    assert all(VERSION_ID.match(v) for v in ids.values()), ids
    head = client.head_object(Bucket=BUCKET, Key="a.fits", VersionId=ids["put"])
    assert head["VersionId"] == ids["put"] and head["ContentLength"] == 3
    client.close()


def test_server_also_serves_sqs_and_dynamodb(clean_server: LocalS3Server) -> None:
    # Given SQS and DynamoDB clients on the same endpoint
    sqs, dynamodb = client_for(clean_server, "sqs"), client_for(clean_server, "dynamodb")

    # When a queue and a table are used
    queue = sqs.create_queue(QueueName="ingest")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="hello")
    dynamodb.create_table(
        TableName="idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="idempotency", Item={"id": {"S": "k"}})

    # Then both work
    assert sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"] == "hello"
    assert dynamodb.get_item(TableName="idempotency", Key={"id": {"S": "k"}})["Item"]["id"]["S"] == "k"
    sqs.close()
    dynamodb.close()


def test_reset_forgets_everything(clean_server: LocalS3Server) -> None:
    # Given a bucket and a queue
    s3, sqs = client_for(clean_server, "s3"), client_for(clean_server, "sqs")
    s3.create_bucket(Bucket=BUCKET)
    sqs.create_queue(QueueName="ingest")

    # When the server is reset
    clean_server.reset()

    # Then nothing is left
    assert s3.list_buckets()["Buckets"] == []
    assert sqs.list_queues().get("QueueUrls", []) == []
    s3.close()
    sqs.close()


def test_stop_releases_the_port() -> None:
    # Given a server that was started and stopped
    server = LocalS3Server().start()
    port = int(server.endpoint_url.rsplit(":", 1)[1])
    server.stop()

    # Then nothing listens there any more and stopping again is harmless
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(1)
        probe.connect(("127.0.0.1", port))
    server.stop()
    with pytest.raises(RuntimeError):
        _ = server.endpoint_url


# ------------------------------------------------------------------------------------------ ranged reads

RANGED_SIZE = 16 * 1024**2


@pytest.fixture
def big_object() -> Iterator[tuple[Any, bytes]]:
    """A 16 MiB object (distinct bytes everywhere) in a versioned bucket of the in-process mock."""
    data = bytes(range(256)) * (RANGED_SIZE // 256)
    with aws_style_version_ids(), mock_aws():
        client = new_session().client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        client.put_object(Bucket=BUCKET, Key="big.fits", Body=data)
        yield client, data


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        ("bytes=0-2879", 0, 2879),
        ("bytes=1000000-1000999", 1000000, 1000999),
        (f"bytes={RANGED_SIZE - 10}-", RANGED_SIZE - 10, RANGED_SIZE - 1),
        ("bytes=-100", RANGED_SIZE - 100, RANGED_SIZE - 1),
        (f"bytes={RANGED_SIZE - 5}-{RANGED_SIZE + 100}", RANGED_SIZE - 5, RANGED_SIZE - 1),
    ],
)
def test_ranged_get_answers_the_range_like_s3(big_object: tuple[Any, bytes], range_header: str, first: int, last: int):
    # Given a 16 MiB object; When one byte range is asked
    client, data = big_object
    resp = client.get_object(Bucket=BUCKET, Key="big.fits", Range=range_header)
    # Then S3's answer: those bytes, their length, and the object's size in Content-Range
    assert resp["Body"].read() == data[first : last + 1]
    assert resp["ContentRange"] == f"bytes {first}-{last}/{RANGED_SIZE}"
    assert resp["ContentLength"] == last - first + 1


def test_ranged_get_pinned_to_a_version_and_etag_reads_that_version(big_object: tuple[Any, bytes]) -> None:
    # Given an object overwritten after its first version
    client, data = big_object
    first = client.head_object(Bucket=BUCKET, Key="big.fits")
    client.put_object(Bucket=BUCKET, Key="big.fits", Body=b"new")
    # When the first version is read by range, pinned to its version and ETag
    resp = client.get_object(
        Bucket=BUCKET, Key="big.fits", Range="bytes=256-511", VersionId=first["VersionId"], IfMatch=first["ETag"]
    )
    # Then its bytes come back; a stale ETag is refused as S3 does
    assert resp["Body"].read() == data[256:512]
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
        client.get_object(Bucket=BUCKET, Key="big.fits", Range="bytes=0-1", IfMatch=first["ETag"])


def test_ranged_get_costs_the_range_not_the_object(big_object: tuple[Any, bytes]) -> None:
    # Given a 16 MiB object; When 2,880 bytes of it are read by range
    client, _ = big_object
    tracemalloc.start()
    try:
        client.get_object(Bucket=BUCKET, Key="big.fits", Range="bytes=0-2879")["Body"].read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then the server copied out about the range, not the object (moto alone copies all 16 MiB)
    assert peak < RANGED_SIZE // 8


def test_whole_and_malformed_range_gets_still_read_the_whole_object(big_object: tuple[Any, bytes]) -> None:
    # Given a 16 MiB object; When read without a range, and with a range S3 ignores
    client, data = big_object
    # Then both answer the whole object
    assert client.get_object(Bucket=BUCKET, Key="big.fits")["Body"].read() == data
    assert client.get_object(Bucket=BUCKET, Key="big.fits", Range="bytes=x-y")["Body"].read() == data


def test_part_copy_costs_the_part_not_the_object(big_object: tuple[Any, bytes]) -> None:
    # Given a 16 MiB object being copied in two parts, the first (15 MiB) done
    client, data = big_object
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="copy.fits")["UploadId"]
    split = RANGED_SIZE - 1024**2
    source = {"Bucket": BUCKET, "Key": "big.fits"}
    first = client.upload_part_copy(
        Bucket=BUCKET, Key="copy.fits", UploadId=upload, PartNumber=1, CopySource=source,
        CopySourceRange=f"bytes=0-{split - 1}",
    )  # fmt: skip
    # When the last 1 MiB is copied as the second part
    tracemalloc.start()
    try:
        last = client.upload_part_copy(
            Bucket=BUCKET, Key="copy.fits", UploadId=upload, PartNumber=2, CopySource=source,
            CopySourceRange=f"bytes={split}-{RANGED_SIZE - 1}",
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    parts = [{"PartNumber": n, "ETag": p["CopyPartResult"]["ETag"]} for n, p in ((1, first), (2, last))]
    client.complete_multipart_upload(Bucket=BUCKET, Key="copy.fits", UploadId=upload, MultipartUpload={"Parts": parts})
    # Then the server held a few copies of the part, not the object (moto alone reads all 16 MiB per part);
    # and the copy is exact
    assert peak < RANGED_SIZE // 2
    assert client.get_object(Bucket=BUCKET, Key="copy.fits")["Body"].read() == data


# ------------------------------------------------------------------------------------------ shared storage


def _traced_peak(action: Any) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_copy_object_shares_the_bytes_and_keeps_the_md5_etag(big_object: tuple[Any, bytes]) -> None:
    # Given a 16 MiB single-part object; When it is copied with CopyObject
    client, data = big_object
    source = client.head_object(Bucket=BUCKET, Key="big.fits")
    peak = _traced_peak(
        lambda: client.copy_object(Bucket=BUCKET, Key="copy.fits", CopySource={"Bucket": BUCKET, "Key": "big.fits"})
    )
    copied = client.get_object(Bucket=BUCKET, Key="copy.fits")
    # Then the local S3 copied no data (moto alone writes all 16 MiB again and hashes it), and the copy
    # is exact, with the source's md5 as its ETag, as S3 gives it
    assert peak < RANGED_SIZE // 8
    assert copied["Body"].read() == data
    assert copied["ETag"] == source["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


def test_completed_multipart_copy_is_exact_with_s3s_etag_and_checksum(big_object: tuple[Any, bytes]) -> None:
    # Given a 16 MiB object copied as three parts (the second uploaded, the others copied)
    client, data = big_object
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="copy.fits")["UploadId"]
    bounds = [(0, 6 * 1024**2), (6 * 1024**2, 12 * 1024**2), (12 * 1024**2, RANGED_SIZE)]
    parts = []
    for number, (first, end) in enumerate(bounds, start=1):
        if number == 2:
            etag = client.upload_part(
                Bucket=BUCKET, Key="copy.fits", UploadId=upload, PartNumber=2, Body=data[first:end]
            )["ETag"]
        else:
            etag = client.upload_part_copy(
                Bucket=BUCKET, Key="copy.fits", UploadId=upload, PartNumber=number,
                CopySource={"Bucket": BUCKET, "Key": "big.fits"}, CopySourceRange=f"bytes={first}-{end - 1}",
            )["CopyPartResult"]["ETag"]  # fmt: skip
        parts.append({"PartNumber": number, "ETag": etag})
    # When the upload is completed
    client.complete_multipart_upload(Bucket=BUCKET, Key="copy.fits", UploadId=upload, MultipartUpload={"Parts": parts})
    copied = client.get_object(Bucket=BUCKET, Key="copy.fits", ChecksumMode="ENABLED")
    # Then the object is exact, its ETag is S3's (md5 of the parts' md5s, "-3"), and its full-object
    # checksum is the one moto computes over the joined bytes
    md5s = b"".join(hashlib.md5(data[a:b]).digest() for a, b in bounds)
    assert copied["Body"].read() == data
    assert copied["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    stored = moto_s3_models.s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(BUCKET, "copy.fits")
    assert stored.checksum_value == moto_s3_utils.compute_checksum(data, "CRC64NVME").decode()
    # and a range across two parts reads straight through
    assert (
        client.get_object(Bucket=BUCKET, Key="copy.fits", Range="bytes=6291000-6292000")["Body"].read()
        == (data[6291000:6292001])
    )


# ------------------------------------------------------------------------------------------ served like S3


def _presigned_path(client: Any, key: str, **params: str) -> str:
    url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key, **params})
    return "/" + url.split("/", 3)[3]


def _raw_get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def test_server_keeps_connections_alive(clean_server: LocalS3Server) -> None:
    # Given an object on the server and one HTTP connection
    client = client_for(clean_server, "s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="a.fits", Body=b"0123456789")
    host, port = clean_server.endpoint_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    path = _presigned_path(client, "a.fits")
    # When two requests are made one after the other on it
    first = _raw_get(conn, path, {"Range": "bytes=0-3"})
    sock = conn.sock
    second = _raw_get(conn, path, {"Range": "bytes=4-9"})
    # Then both are answered on the same connection, as S3 does (werkzeug closed it after every answer)
    assert (first[0], first[2], second[0], second[2]) == (206, b"0123", 206, b"456789")
    assert conn.sock is sock and first[1].get("connection") != "close"
    conn.close()
    client.close()


IGNORED = {"date", "x-amzn-requestid", "server", "connection", "x-amz-id-2", "x-amz-request-id"}


@pytest.mark.parametrize(
    ("pin", "asked"), [("none", "range"), ("version", "range"), ("etag", "range"), ("none", "whole")]
)
def test_get_answered_ahead_of_moto_is_moto_s_answer(
    clean_server: LocalS3Server, pin: str, asked: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a versioned object with metadata, and one HTTP connection
    answer, served = FastRangedGets._answer, []

    def counted(self: FastRangedGets, environ: dict[str, Any]) -> Any:
        found = answer(self, environ)
        served.append(found is not None)
        return found

    monkeypatch.setattr(FastRangedGets, "_answer", counted)
    client = client_for(clean_server, "s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put = client.put_object(
        Bucket=BUCKET, Key="dir/a.fits", Body=bytes(range(256)) * 64, Metadata={"frame_id": "7", "site": "ogg"},
        ContentType="image/fits", StorageClass="STANDARD_IA",
    )  # fmt: skip
    host, port = clean_server.endpoint_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    path = _presigned_path(client, "dir/a.fits", **({"VersionId": put["VersionId"]} if pin == "version" else {}))
    headers = ({"Range": "bytes=100-16383"} if asked == "range" else {}) | (
        {"If-Match": put["ETag"]} if pin == "etag" else {}
    )
    # When the range is asked as the md5 stream asks it (answered ahead of moto), and with a header that
    # sends the same request through moto's own stack (a condition every object meets)
    fast = _raw_get(conn, path, headers)
    through_moto = _raw_get(conn, path, headers | {"If-Unmodified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
    # Then the first was answered ahead of moto, the second by moto; status, body and headers are the same
    assert served[-2:] == [True, False]
    first = 100 if asked == "range" else 0
    assert fast[0] == through_moto[0] == (206 if asked == "range" else 200)
    assert fast[2] == through_moto[2] == (bytes(range(256)) * 64)[first:]
    drop = lambda h: {k: v for k, v in h.items() if k not in IGNORED}  # noqa: E731
    assert drop(fast[1]) == drop(through_moto[1])
    # and a stale ETag still gets moto's 412
    assert _raw_get(conn, _presigned_path(client, "dir/a.fits"), {"Range": "bytes=0-1", "If-Match": '"0"'})[0] == 412
    # and an anonymous request is moto's to refuse
    assert _raw_get(conn, f"/{BUCKET}/dir/a.fits", {"Range": "bytes=0-1"})[0] == 403
    conn.close()
    client.close()
