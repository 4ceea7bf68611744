"""ingest_object() end to end: moto S3 (32-char version ids) + the archive emulator on loopback."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import requests

from lambda_ingest import store
from lambda_ingest.errors import ArchiveUnavailableError, ObjectChangedError, ObjectGoneError, RecordError
from lambda_ingest.ingest import ingest_object
from lambda_ingest.local.synthetic import thumbnail_metadata
from lambda_ingest.record import json_safe
from tests.conftest import ADMIN_TOKEN, ARCHIVE, LANDING, real_frames

NAME = "cpt1m010-kb70-20151219-0073-e00"


def upload(s3, key: str, data: bytes, **extra) -> dict:
    return s3.put_object(Bucket=LANDING, Key=key, Body=data, **extra)


def archive_versions(s3, key: str) -> list[dict]:
    return s3.list_object_versions(Bucket=ARCHIVE, Prefix=key).get("Versions", [])


def synthetic(name: str = NAME, extension: str = ".fits.fz", **kwargs) -> bytes:
    from lambda_ingest.local.synthetic import make_frame_bytes

    return make_frame_bytes(basename=name, extension=extension, **kwargs)


@pytest.fixture
def posted(monkeypatch) -> list[dict]:
    """Every payload the engine POSTs to the archive, exactly as sent."""
    from lambda_ingest.archive import ArchiveClient

    sent: list[dict] = []
    original = ArchiveClient.post

    def spy(self, endpoint, payload):
        sent.append(json.loads(json.dumps(payload)))
        return original(self, endpoint, payload)

    monkeypatch.setattr(ArchiveClient, "post", spy)
    return sent


@pytest.mark.parametrize("path", real_frames(), ids=lambda p: p.name)
def test_every_real_frame_ingests_end_to_end(s3, archive_api, posted, path: Path) -> None:
    from ocs_ingester.ingester import validate_fits_and_create_archive_record

    # Given a real frame in the landing bucket
    data = path.read_bytes()
    upload(s3, f"incoming/{path.name}", data)
    # When it is ingested
    result = ingest_object(LANDING, f"incoming/{path.name}")
    # Then the archive holds exactly these bytes at ocs_archive's canonical key, under the registered version
    with warnings.catch_warnings(), open(path, "rb") as fileobj:
        warnings.simplefilter("ignore")
        expected = json_safe(validate_fits_and_create_archive_record(fileobj, path=str(path)))
    assert result.status == "ingested"
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert len(result.version_id) == 32
    body = s3.get_object(Bucket=ARCHIVE, Key=result.archive_key, VersionId=result.version_id)["Body"].read()
    assert body == data
    assert result.archive_key.startswith(f"{expected['site_id']}/{expected['instrument_id']}/")
    # And the record posted is ocs_ingester's record from the whole file, plus our version_set
    [frame] = [f for f in archive_api.frames() if f["id"] == result.frame_id]
    [payload] = posted
    assert {k: v for k, v in payload.items() if k != "version_set"} == expected
    assert payload["version_set"] == [
        {"key": result.version_id, "md5": result.md5, "extension": path.name[len(expected["basename"]) :]}
    ]
    assert frame["basename"] == expected["basename"]
    # And the landing object is gone, only header blocks were read
    assert "Contents" not in s3.list_objects_v2(Bucket=LANDING)
    assert result.header_bytes_read <= 256 * 1024


def test_downloading_the_registered_url_returns_the_same_bytes(s3, archive_api) -> None:
    data = synthetic()
    upload(s3, NAME + ".fits.fz", data)
    result = ingest_object(LANDING, NAME + ".fits.fz")
    [frame] = requests.get(
        f"{archive_api.api_root}frames/",
        params={"basename_exact": NAME},
        headers={"Authorization": f"Token {ADMIN_TOKEN}"},
        timeout=5,
    ).json()["results"]
    assert frame["url"]
    # The emulator presigns for moto's endpoint; fetch through boto3's view of that URL's key/version.
    assert f"versionId={result.version_id}" in frame["url"]
    assert result.archive_key in frame["url"]


def test_second_ingest_of_same_bytes_is_already_ingested_and_writes_nothing(s3, archive_api) -> None:
    data = synthetic()
    upload(s3, NAME + ".fits.fz", data)
    first = ingest_object(LANDING, NAME + ".fits.fz")
    upload(s3, NAME + ".fits.fz", data)
    second = ingest_object(LANDING, NAME + ".fits.fz")
    assert second.status == "already_ingested"
    assert second.frame_id == first.frame_id
    assert len(archive_versions(s3, first.archive_key)) == 1
    assert len(archive_api.versions()) == 1
    assert "Contents" not in s3.list_objects_v2(Bucket=LANDING)


def test_already_ingested_reports_the_matched_versions_own_url(s3, archive_api) -> None:
    # Given two versions under one basename: bytes A, then other bytes B (the frame's url is now B's)
    old, new = synthetic(seed=1), synthetic(seed=2)
    upload(s3, NAME + ".fits.fz", old)
    first = ingest_object(LANDING, NAME + ".fits.fz")
    upload(s3, NAME + ".fits.fz", new)
    second = ingest_object(LANDING, NAME + ".fits.fz")
    assert second.status == "ingested" and second.version_id != first.version_id
    # When bytes A arrive again (issue 10, finding 9)
    upload(s3, NAME + ".fits.fz", old)
    again = ingest_object(LANDING, NAME + ".fits.fz")
    # Then it is already ingested as version A, and its URL downloads A (the version's url, not the frame's)
    assert again.status == "already_ingested" and again.version_id == first.version_id
    assert again.url and f"versionId={first.version_id}" in again.url
    assert f"versionId={second.version_id}" not in again.url


def test_byte_identical_file_under_another_name_is_already_ingested_without_orphan(s3, archive_api) -> None:
    data = synthetic()
    upload(s3, NAME + ".fits.fz", data)
    ingest_object(LANDING, NAME + ".fits.fz")
    other = "cpt1m010-kb70-20151219-0099-e00.fits.fz"
    upload(s3, other, data)
    result = ingest_object(LANDING, other)
    assert result.status == "already_ingested"
    assert archive_versions(s3, result.archive_key) == []  # the copy made for it was removed
    assert len(archive_api.versions()) == 1


def test_multipart_upload_md5_is_streamed(s3, archive_api, monkeypatch) -> None:

    data = synthetic(data_bytes=12 * 1024 * 1024)
    mpu = s3.create_multipart_upload(Bucket=LANDING, Key=NAME + ".fits.fz")
    parts = []
    for n, start in enumerate(range(0, len(data), 5 * 1024 * 1024), 1):
        part = s3.upload_part(
            Bucket=LANDING,
            Key=NAME + ".fits.fz",
            UploadId=mpu["UploadId"],
            PartNumber=n,
            Body=data[start : start + 5 * 1024 * 1024],
        )
        parts.append({"PartNumber": n, "ETag": part["ETag"]})
    s3.complete_multipart_upload(
        Bucket=LANDING, Key=NAME + ".fits.fz", UploadId=mpu["UploadId"], MultipartUpload={"Parts": parts}
    )
    # Force the multipart copy path too, with 5 MiB parts.
    monkeypatch.setattr(store, "COPY_MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(store, "COPY_PART_SIZE", 5 * 1024 * 1024)
    result = ingest_object(LANDING, NAME + ".fits.fz")
    assert result.md5 == hashlib.md5(data).hexdigest()
    copied = s3.get_object(Bucket=ARCHIVE, Key=result.archive_key, VersionId=result.version_id)
    assert copied["Body"].read() == data
    assert copied["ContentType"] == "image/fits"


def test_header_bytes_read_for_a_200mb_frame_stay_under_one_growth_step(s3, archive_api) -> None:
    import io

    from lambda_ingest.local.synthetic import write_frame

    buf = io.BytesIO()
    write_frame(buf, basename=NAME, extension=".fits", data_bytes=200 * 1024 * 1024)
    upload(s3, NAME + ".fits", buf.getvalue())
    del buf
    result = ingest_object(LANDING, NAME + ".fits")
    assert result.status == "ingested"
    assert result.header_bytes_read < 1024 * 1024
    assert result.header_bytes_read <= 2 * 36 * 2880


def test_rejected_file_keeps_its_bytes(s3, archive_api) -> None:
    from lambda_ingest.local.synthetic import lco_header

    data = synthetic(header=lco_header(NAME, drop=("DAY-OBS",)))
    upload(s3, NAME + ".fits.fz", data)
    with pytest.raises(RecordError, match="missing required header DAY-OBS") as err:
        ingest_object(LANDING, NAME + ".fits.fz")
    assert f"s3://{LANDING}/{NAME}.fits.fz" in str(err.value)
    assert s3.get_object(Bucket=LANDING, Key=NAME + ".fits.fz")["Body"].read() == data
    assert archive_api.versions() == []


def test_archive_down_leaves_no_orphan_and_keeps_landing(s3, archive_api) -> None:
    upload(s3, NAME + ".fits.fz", synthetic())
    archive_api.inject(status=503, count=1, method="POST")
    with pytest.raises(ArchiveUnavailableError):
        ingest_object(LANDING, NAME + ".fits.fz")
    assert all(v["Key"] != "" for v in archive_versions(s3, "cpt/"))
    assert archive_versions(s3, "cpt/") == []
    assert s3.list_objects_v2(Bucket=LANDING)["KeyCount"] == 1
    # When the archive recovers, the next delivery ingests it
    assert ingest_object(LANDING, NAME + ".fits.fz").status == "ingested"


def test_crash_after_copy_before_post_converges_without_orphan(s3, archive_api, monkeypatch) -> None:
    from lambda_ingest import ingest as ingest_module
    from lambda_ingest.archive import ArchiveClient

    upload(s3, NAME + ".fits.fz", synthetic())

    class Crash(BaseException):
        """A Lambda killed mid-flight: no cleanup runs."""

    def crash(*args, **kwargs):
        raise Crash()

    with monkeypatch.context() as m:
        m.setattr(ArchiveClient, "post", crash)
        m.setattr(ingest_module, "_discard_copy", crash)
        with pytest.raises(Crash):
            ingest_object(LANDING, NAME + ".fits.fz")
    assert len(archive_versions(s3, "cpt/")) == 1  # the orphan of the crashed attempt
    # When the message is delivered again
    result = ingest_object(LANDING, NAME + ".fits.fz")
    # Then exactly one archive version remains, and it is the registered one
    assert [v["VersionId"] for v in archive_versions(s3, result.archive_key)] == [result.version_id]
    assert len(archive_api.versions()) == 1


def test_deleted_landing_object_is_gone_not_retried(s3, archive_api) -> None:
    with pytest.raises(ObjectGoneError):
        ingest_object(LANDING, NAME + ".fits.fz")


def test_overwritten_landing_object_is_not_mixed(s3, archive_api) -> None:
    first = upload(s3, NAME + ".fits.fz", synthetic(seed=1))
    upload(s3, NAME + ".fits.fz", synthetic(seed=2))
    with pytest.raises(ObjectChangedError, match="overwritten"):
        ingest_object(LANDING, NAME + ".fits.fz", etag=first["ETag"])
    assert archive_api.versions() == []


def test_storage_class_follows_observation_age(s3, archive_api) -> None:
    from datetime import UTC, datetime

    from lambda_ingest.local.synthetic import lco_header

    old = ingest_object_after_upload(s3, NAME, synthetic())
    now = datetime.now(UTC)
    recent_name = f"cpt1m010-kb70-{now:%Y%m%d}-0001-e00"
    header = lco_header(recent_name, **{"DATE-OBS": now.strftime("%Y-%m-%dT%H:%M:%S.000"), "DAY-OBS": f"{now:%Y%m%d}"})
    recent = ingest_object_after_upload(s3, recent_name, synthetic(recent_name, header=header, seed=5))
    head_old = s3.head_object(Bucket=ARCHIVE, Key=old.archive_key, VersionId=old.version_id)
    head_new = s3.head_object(Bucket=ARCHIVE, Key=recent.archive_key, VersionId=recent.version_id)
    assert head_old["StorageClass"] == "STANDARD_IA"
    assert head_new.get("StorageClass", "STANDARD") == "STANDARD"
    assert head_old["ContentDisposition"] == f"attachment; filename={NAME}.fits.fz"


def ingest_object_after_upload(s3, name: str, data: bytes):
    upload(s3, name + ".fits.fz", data)
    return ingest_object(LANDING, name + ".fits.fz")


def test_version_id_longer_than_32_is_a_clear_permanent_error(s3, archive_api) -> None:
    from lambda_ingest.errors import StorageAccessError
    from lambda_ingest.local.s3 import uninstall_aws_style_version_ids

    uninstall_aws_style_version_ids()  # moto's own 36-character ids, as MinIO would issue
    upload(s3, NAME + ".fits.fz", synthetic())
    with pytest.raises(StorageAccessError, match=r"\(36 characters\); the archive stores at most 32"):
        ingest_object(LANDING, NAME + ".fits.fz")
    assert archive_versions(s3, "cpt/") == []  # the copy was removed
    assert s3.list_objects_v2(Bucket=LANDING)["KeyCount"] == 1


PDF_METADATA = {
    "propid": "LCO2015B-001",
    "date-obs": "2015-12-19T18:22:15.000",
    "day-obs": "20151219",
    "instrume": "kb70",
    "siteid": "cpt",
    "telid": "1m0a",
    "obstype": "EXPOSE",
    "blkuid": "123456",
}


def test_pdf_takes_its_metadata_from_s3_user_metadata(s3, archive_api, posted) -> None:
    # Given a PDF whose metadata rides on the upload as x-amz-meta-* (S3 lower-cases the names)
    name = "cpt1m010-kb70-20151219-0073-e92-summary"
    upload(s3, name + ".pdf", b"%PDF-1.4 summary", Metadata=PDF_METADATA)
    # When it is ingested
    result = ingest_object(LANDING, name + ".pdf")
    # Then the record carries the metadata under ocs_archive's upper-case names, at the canonical key
    assert result.status == "ingested"
    assert result.archive_key == f"cpt/kb70/20151219/raw/{name}.pdf"  # no RLEVEL: level 0, as ocs_ingester
    headers = posted[-1]["headers"]
    assert headers["PROPID"] == "LCO2015B-001" and headers["DAY-OBS"] == "20151219"
    assert posted[-1]["configuration_type"] == "EXPOSE"


def test_pdf_without_metadata_names_what_is_missing(s3, archive_api) -> None:
    name = "cpt1m010-kb70-20151219-0073-e92-summary"
    upload(s3, name + ".pdf", b"%PDF-1.4 summary", Metadata={k: v for k, v in PDF_METADATA.items() if k != "propid"})
    with pytest.raises(RecordError, match="missing required metadata PROPID"):
        ingest_object(LANDING, name + ".pdf")


def test_thumbnail_registers_with_thumbnails_endpoint(s3, archive_api) -> None:
    # Given the frame, then its thumbnail with frame_basename and size as user metadata
    upload(s3, NAME + ".fits.fz", synthetic())
    ingest_object(LANDING, NAME + ".fits.fz")
    thumb = thumbnail_metadata(NAME)
    upload(s3, NAME + "-small.jpg", b"\xff\xd8\xff\xe0 jpeg", Metadata=thumb)
    result = ingest_object(LANDING, NAME + "-small.jpg")
    # Then it is POSTed to thumbnails/ and stored under ocs_archive's thumbnail path
    [thumbnail] = archive_api.thumbnails()
    assert (thumbnail["frame_basename"], thumbnail["size"]) == (NAME, "small")
    assert result.archive_key == f"cpt/kb70/20151219/thumbnails/{NAME}-small.jpg"
    stored = s3.get_object(Bucket=ARCHIVE, Key=result.archive_key, VersionId=result.version_id)
    assert stored["ContentType"] == "image/jpg"


def test_a_missing_landing_bucket_is_a_system_fault(s3, archive_api) -> None:
    from lambda_ingest.errors import StorageAccessError

    # Given an event naming a landing bucket that does not exist (a deployment's fault, not the file's)
    # When it is ingested, Then the first ranged GET's NoSuchBucket says so (a HEAD's bare 404 could not)
    with pytest.raises(StorageAccessError, match="NoSuchBucket"):
        ingest_object("no-such-landing-bucket", NAME + ".fits.fz")


def test_an_empty_object_is_described_by_a_head_and_rejected_as_empty(s3, archive_api) -> None:
    from lambda_ingest.errors import InvalidFileError

    # Given a zero-byte frame (no byte range to read: S3 answers 416)
    etag = upload(s3, NAME + ".fits.fz", b"")["ETag"]
    # When it is ingested as its event names it, Then it is rejected for what it is, and nothing is copied
    with pytest.raises(InvalidFileError, match="empty"):
        ingest_object(LANDING, NAME + ".fits.fz", etag=etag)
    assert archive_versions(s3, "") == []
