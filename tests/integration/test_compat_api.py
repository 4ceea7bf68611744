"""ocs_ingester's Python API from `lambda_ingest`: same names, arguments, results and exception meanings."""

from __future__ import annotations

import errno
import hashlib
import io
import warnings
from pathlib import Path

import pytest
import requests

import lambda_ingest as ingester
from lambda_ingest import clients
from lambda_ingest.record import json_safe
from tests.conftest import ADMIN_TOKEN, ARCHIVE, real_frames, set_env

NAME = "cpt1m010-kb70-20151219-0073-e00"


@pytest.fixture(autouse=True)
def _no_metrics_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # ocs_ingester's metrics module looks up its OpenTSDB host when imported, unless in test mode.
    monkeypatch.setenv("OPENTSDB_PYTHON_METRICS_TEST_MODE", "1")


def reference_record(fileobj, **kwargs) -> dict:
    """ocs_ingester 3.2.0's own record (whole file), JSON-safe."""
    from ocs_ingester.ingester import validate_fits_and_create_archive_record

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's WCS fix-up notes
        return json_safe(validate_fits_and_create_archive_record(fileobj, **kwargs))


def frame(name: str = NAME, ext: str = ".fits.fz", seed: int = 0, **kwargs) -> io.BytesIO:
    """A synthetic frame as a named file object, as `open()` would give."""
    from lambda_ingest.local.synthetic import make_frame_bytes

    fileobj = io.BytesIO(make_frame_bytes(name, ext, seed=seed, **kwargs))
    fileobj.name = f"/data/{name}{ext}"
    return fileobj


THUMBNAIL_METADATA = {
    "frame_basename": NAME,
    "DATE-OBS": "2015-12-19T20:00:00",
    "DAY-OBS": "20151219",
    "INSTRUME": "kb70",
    "SITEID": "cpt",
    "TELID": "1m0a",
    "OBSTYPE": "EXPOSE",  # the archive validates a thumbnail's body as a frame's
}


def jpeg(tag: bytes = b"") -> io.BytesIO:
    return io.BytesIO(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + tag + b"\xff\xd9")


# --- validate_fits_and_create_archive_record -------------------------------------------------------------


@pytest.mark.parametrize("path", real_frames(), ids=lambda p: p.name)
def test_record_equals_ocs_ingesters_on_every_real_frame(path: Path) -> None:
    with open(path, "rb") as fileobj:
        ours = ingester.validate_fits_and_create_archive_record(fileobj)
    with open(path, "rb") as fileobj:
        assert ours == reference_record(fileobj)


@pytest.mark.parametrize(
    ("name", "ext"),
    [(NAME, ".fits.fz"), (NAME, ".fits"), ("lsc1m005-kb78-20151109-0179-e91", "_cat.fits")],
)
def test_record_equals_ocs_ingesters_on_synthetic_frames(name: str, ext: str) -> None:
    ours = ingester.validate_fits_and_create_archive_record(frame(name, ext))
    assert ours == reference_record(frame(name, ext))


def test_record_of_a_spectrum_bundle_equals_ocs_ingesters() -> None:
    from lambda_ingest.local.synthetic import DEFAULT_SPECTRUM_BASENAME, write_tarball

    data = io.BytesIO()
    write_tarball(data)
    path = f"{DEFAULT_SPECTRUM_BASENAME}.tar.gz"
    ours = ingester.validate_fits_and_create_archive_record(io.BytesIO(data.getvalue()), path=path)
    assert ours == reference_record(io.BytesIO(data.getvalue()), path=path)


def test_record_of_a_pdf_from_file_metadata_equals_ocs_ingesters(fixtures_dir: Path) -> None:
    path = fixtures_dir / "other" / "cptnrs03-fa13-20150219-0001-e92-summary.pdf"
    metadata = {
        "PROPID": "LCO2015A-009",
        "DATE-OBS": "2015-02-19T20:00:00",
        "DAY-OBS": "20150219",
        "INSTRUME": "fa13",
        "SITEID": "cpt",
        "TELID": "1m0a",
        "OBSTYPE": "SPECTRUM",
        "BLKUID": "4567",
    }
    with open(path, "rb") as fileobj:
        ours = ingester.validate_fits_and_create_archive_record(fileobj, file_metadata=dict(metadata))
    with open(path, "rb") as fileobj:
        assert ours == reference_record(fileobj, file_metadata=dict(metadata))


def test_path_names_a_file_object_without_a_name() -> None:
    anonymous = io.BytesIO(frame().getvalue())
    record = ingester.validate_fits_and_create_archive_record(anonymous, path=f"{NAME}.fits.fz")
    assert record["basename"] == NAME
    with pytest.raises(ingester.DoNotRetryError, match="pass path="):
        ingester.validate_fits_and_create_archive_record(io.BytesIO(frame().getvalue()))


def test_missing_required_header_raises_do_not_retry() -> None:
    from lambda_ingest.local.synthetic import lco_header

    with pytest.raises(ingester.DoNotRetryError, match="DAY-OBS"):
        ingester.validate_fits_and_create_archive_record(frame(header=lco_header(NAME, drop=("DAY-OBS",))))
    # required_headers and blacklist_headers mean what they meant in ocs_ingester
    with pytest.raises(ingester.DoNotRetryError, match="NOSUCHKEY"):
        ingester.validate_fits_and_create_archive_record(frame(), required_headers=("NOSUCHKEY",))
    record = ingester.validate_fits_and_create_archive_record(frame(), blacklist_headers=("OBJECT", "EXPTIME"))
    assert "OBJECT" not in record["headers"]
    assert "EXPTIME" not in record["headers"]


# --- the upload and registration functions -------------------------------------------------------------


def test_one_step_ingest_then_exists_then_already_ingested(s3, archive_api) -> None:
    fileobj = frame(seed=11)
    data = fileobj.getvalue()
    # Given a frame the archive does not hold
    assert ingester.frame_exists(fileobj) is False
    # When it is uploaded and ingested in one step
    record = ingester.upload_file_and_ingest_to_archive(fileobj)
    # Then the result is ocs_ingester's: the record, its version_set and the archive's frameid/filename/url
    [version] = record["version_set"]
    assert version["md5"] == hashlib.md5(data).hexdigest()
    assert len(version["key"]) == 32
    assert version["extension"] == ".fits.fz"
    assert record["basename"] == NAME
    assert record["filename"] == f"{NAME}.fits.fz"
    assert record["frameid"] == archive_api.frames()[0]["id"]
    assert requests.get(record["url"], timeout=10).content == data
    body = s3.get_object(Bucket=ARCHIVE, Key=f"cpt/kb70/20151219/raw/{NAME}.fits.fz", VersionId=version["key"])
    assert body["Body"].read() == data
    assert {k: v for k, v in record.items() if k not in ("version_set", "frameid", "filename", "url")} == (
        reference_record(frame(seed=11))
    )
    # And then the frame exists, and ingesting it again raises NonFatalDoNotRetryError, writing nothing
    assert ingester.frame_exists(fileobj) is True
    with pytest.raises(ingester.NonFatalDoNotRetryError, match="Version with this md5 already exists"):
        ingester.upload_file_and_ingest_to_archive(fileobj)
    assert len(s3.list_object_versions(Bucket=ARCHIVE)["Versions"]) == 1


def test_real_frame_in_one_step(s3, archive_api, fixtures_dir: Path) -> None:
    path = fixtures_dir / "fits" / "coj1m011-kb05-20150219-0125-e90.fits.fz"
    with open(path, "rb") as fileobj:
        record = ingester.upload_file_and_ingest_to_archive(fileobj)
        assert ingester.frame_exists(fileobj)
    assert requests.get(record["url"], timeout=10).content == path.read_bytes()
    assert archive_api.frames()[0]["basename"] == "coj1m011-kb05-20150219-0125-e90"


def test_step_by_step_as_ocs_ingesters_docstring(s3, archive_api) -> None:
    fileobj = frame(seed=12)
    # The example of ocs_ingester's module docstring, unchanged but for the import
    if not ingester.frame_exists(fileobj):
        record = ingester.validate_fits_and_create_archive_record(fileobj)
        version = ingester.upload_file_to_file_store(fileobj)
        ingested = ingester.ingest_archive_record(version, record)
    # upload_file_to_file_store returns ocs_ingester's version dict, for the object really at the canonical key
    assert set(version) == {"key", "md5", "extension"}
    assert version["md5"] == hashlib.md5(fileobj.getvalue()).hexdigest()
    head = s3.head_object(Bucket=ARCHIVE, Key=f"cpt/kb70/20151219/raw/{NAME}.fits.fz", VersionId=version["key"])
    assert head["ContentType"] == "image/fits"
    # ingest_archive_record returns the record with the archive's answers added
    assert ingested["version_set"] == [version]
    assert ingested["frameid"] == archive_api.frames()[0]["id"]
    assert ingested["filename"] == f"{NAME}.fits.fz"
    assert requests.get(ingested["url"], timeout=10).content == fileobj.getvalue()
    # Registering the same version again is a client error: DoNotRetryError, as ocs_ingester's 400
    with pytest.raises(ingester.DoNotRetryError, match="md5 already exists"):
        ingester.ingest_archive_record(version, ingester.validate_fits_and_create_archive_record(fileobj))


def test_api_root_and_auth_token_arguments_override_the_environment(s3, archive_api, monkeypatch) -> None:
    from lambda_ingest.settings import reset_settings

    monkeypatch.setenv("API_ROOT", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("AUTH_TOKEN", "wrong")
    reset_settings()
    fileobj = frame(seed=13)
    args = {"api_root": archive_api.api_root, "auth_token": ADMIN_TOKEN}
    assert ingester.frame_exists(fileobj, **args) is False
    record = ingester.upload_file_and_ingest_to_archive(fileobj, **args)
    assert ingester.frame_exists(fileobj, **args) is True
    assert record["frameid"] == archive_api.frames()[0]["id"]
    # A refused token is a client error (DoNotRetryError); an unreachable archive is BackoffRetryError
    with pytest.raises(ingester.DoNotRetryError, match="refused the token"):
        ingester.frame_exists(fileobj, api_root=archive_api.api_root, auth_token="wrong")
    with pytest.raises(ingester.BackoffRetryError, match="unreachable"):
        ingester.frame_exists(fileobj)


def test_archive_errors_map_to_ocs_ingesters_exceptions_and_leave_no_orphan(s3, archive_api) -> None:
    # 503 on the registration: retry later, and the uploaded copy is removed again
    archive_api.inject(status=503, method="POST", path_prefix="frames/")
    with pytest.raises(ingester.BackoffRetryError):
        ingester.upload_file_and_ingest_to_archive(frame(seed=14))
    assert "Versions" not in s3.list_object_versions(Bucket=ARCHIVE)
    # 400 on the record: do not retry, same clean-up
    archive_api.inject(status=400, method="POST", path_prefix="frames/")
    with pytest.raises(ingester.DoNotRetryError):
        ingester.upload_file_and_ingest_to_archive(frame(seed=14))
    assert "Versions" not in s3.list_object_versions(Bucket=ARCHIVE)


def test_exceptions_keep_ocs_ingesters_names_and_hierarchy() -> None:
    from lambda_ingest import errors

    assert ingester.DoNotRetryError is errors.DoNotRetryError
    assert ingester.BackoffRetryError is errors.BackoffRetryError
    assert ingester.NonFatalDoNotRetryError is errors.NonFatalDoNotRetryError
    assert ingester.RetryError is errors.RetryError
    assert issubclass(errors.AlreadyIngestedError, ingester.NonFatalDoNotRetryError)
    assert issubclass(errors.RecordError, ingester.DoNotRetryError)
    assert issubclass(errors.ArchiveUnavailableError, ingester.BackoffRetryError)
    assert not issubclass(ingester.NonFatalDoNotRetryError, ingester.DoNotRetryError)
    # `from ocs_ingester.ingester import X` becomes `from lambda_ingest import X`
    from lambda_ingest import upload_file_and_ingest_to_archive  # noqa: F401


FAMILIES = (ingester.DoNotRetryError, ingester.NonFatalDoNotRetryError, ingester.RetryError, ingester.BackoffRetryError)


def test_every_error_class_belongs_to_exactly_one_of_ocs_ingesters_families() -> None:
    from lambda_ingest import errors

    # ocs_ingester's four classes: none is a subclass of another (callers order their except clauses freely)
    for family in FAMILIES:
        assert [other for other in FAMILIES if issubclass(family, other)] == [family]
    # Walking the tree: every class the project raises is in exactly one family; only the two bases are not
    tree = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.IngestError)]
    outside = {c for c in tree if not issubclass(c, FAMILIES)}
    assert outside == {errors.IngestError, errors.TransientError}
    for cls in set(tree) - outside:
        assert sum(issubclass(cls, family) for family in FAMILIES) == 1, cls
    # The system's faults are DoNotRetryError (retrying the same call cannot fix them), never a rejection
    for cls in (errors.ConfigurationError, errors.ArchiveAccessError, errors.StorageAccessError):
        assert issubclass(cls, ingester.DoNotRetryError) and not issubclass(cls, errors.RejectedError)


class FailingRead(io.BytesIO):
    """A file on a network file system that fails under the reader."""

    def __init__(self, data: bytes, error: OSError) -> None:
        super().__init__(data)
        self.error, self.name = error, f"/data/{NAME}.fits.fz"

    def read(self, *args):
        raise self.error


def _closed_file() -> io.BytesIO:
    fileobj = frame(seed=20)
    fileobj.close()
    return fileobj


# (what fails, how to make it fail, the call, the family expected)
FAILURES = {
    "not a FITS file": (
        lambda mp, arch, tmp: None,
        lambda: ingester.validate_fits_and_create_archive_record(_named(b"observing notes" * 300, ".fits")),
        ingester.DoNotRetryError,
    ),
    "unsupported extension": (
        lambda mp, arch, tmp: None,
        lambda: ingester.upload_file_and_ingest_to_archive(_named(b"text", ".txt")),
        ingester.DoNotRetryError,
    ),
    "pdf without metadata": (
        lambda mp, arch, tmp: None,
        lambda: ingester.upload_file_and_ingest_to_archive(_named(b"%PDF-1.4 new", ".pdf")),
        ingester.DoNotRetryError,
    ),
    "no token": (
        lambda mp, arch, tmp: set_env(mp, AUTH_TOKEN=None),
        lambda: ingester.upload_file_and_ingest_to_archive(frame(seed=21)),
        ingester.DoNotRetryError,
    ),
    "invalid setting": (
        lambda mp, arch, tmp: set_env(mp, HTTP_READ_TIMEOUT="abc"),
        lambda: ingester.frame_exists(frame(seed=22)),
        ingester.DoNotRetryError,
    ),
    "unknown FILESTORE_TYPE": (
        lambda mp, arch, tmp: set_env(mp, FILESTORE_TYPE="ftp"),
        lambda: ingester.upload_file_to_file_store(frame(seed=23)),
        ingester.DoNotRetryError,
    ),
    "local store without a root": (
        lambda mp, arch, tmp: set_env(mp, FILESTORE_TYPE="local", FILESYSTEM_STORAGE_ROOT_DIR=None),
        lambda: ingester.upload_file_to_file_store(frame(seed=24)),
        ingester.DoNotRetryError,
    ),
    "local store root is a file": (
        lambda mp, arch, tmp: (
            (tmp / "root").write_text("not a folder"),
            set_env(mp, FILESTORE_TYPE="local", FILESYSTEM_STORAGE_ROOT_DIR=str(tmp / "root")),
        ),
        lambda: ingester.upload_file_to_file_store(frame(seed=25)),
        ingester.DoNotRetryError,
    ),
    "archive 503": (
        lambda mp, arch, tmp: arch.inject(status=503, method="POST", path_prefix="frames/"),
        lambda: ingester.upload_file_and_ingest_to_archive(frame(seed=26)),
        ingester.BackoffRetryError,
    ),
    "archive 429": (
        lambda mp, arch, tmp: arch.inject(status=429, method="GET", path_prefix="frames/"),
        lambda: ingester.frame_exists(frame(seed=27)),
        ingester.BackoffRetryError,
    ),
    "archive times out": (
        lambda mp, arch, tmp: (
            arch.inject(delay=0.3, method="GET", path_prefix="frames/"),
            set_env(mp, HTTP_READ_TIMEOUT="0.05"),
        ),
        lambda: ingester.upload_file_and_ingest_to_archive(frame(seed=34)),
        ingester.BackoffRetryError,
    ),
    "archive refuses connections": (
        lambda mp, arch, tmp: set_env(mp, API_ROOT="http://127.0.0.1:9/"),
        lambda: ingester.ingest_archive_record({"key": "k", "md5": "m", "extension": ".fits.fz"}, {}),
        ingester.BackoffRetryError,
    ),
    "archive refuses the token": (
        lambda mp, arch, tmp: set_env(mp, AUTH_TOKEN="wrong"),
        lambda: ingester.upload_file_and_ingest_to_archive(frame(seed=28)),
        ingester.DoNotRetryError,
    ),
    "S3 unreachable": (
        lambda mp, arch, tmp: (
            mp.setattr(clients, "S3_MAX_ATTEMPTS", 1),
            set_env(mp, S3_ENDPOINT_URL="http://127.0.0.1:9"),
        ),
        lambda: ingester.upload_file_to_file_store(frame(seed=29)),
        ingester.BackoffRetryError,
    ),
    "file read fails (EIO)": (
        lambda mp, arch, tmp: None,
        lambda: ingester.upload_file_and_ingest_to_archive(
            FailingRead(frame(seed=33).getvalue(), OSError(errno.EIO, "I/O error"))
        ),
        ingester.BackoffRetryError,
    ),
    "file object closed": (
        lambda mp, arch, tmp: None,
        lambda: ingester.upload_file_and_ingest_to_archive(_closed_file()),
        ingester.DoNotRetryError,
    ),
}


def _named(data: bytes, ext: str) -> io.BytesIO:
    fileobj = io.BytesIO(data)
    fileobj.name = f"/data/{NAME}{ext}"
    return fileobj


@pytest.mark.parametrize("case", FAILURES, ids=list(FAILURES))
def test_every_failure_of_the_api_is_in_one_of_the_four_families(case, s3, archive_api, monkeypatch, tmp_path) -> None:
    arrange, call, family = FAILURES[case]
    # Given the fault
    arrange(monkeypatch, archive_api, tmp_path)
    # When the API is called, then it raises in the family a caller's except chain expects
    with pytest.raises(FAMILIES) as raised:
        call()
    assert isinstance(raised.value, family), f"{case}: {type(raised.value).__name__}: {raised.value}"
    # And nothing was stored anywhere
    assert "Versions" not in s3.list_object_versions(Bucket=ARCHIVE)
    assert archive_api.frames() == []


def test_a_pdf_already_archived_is_found_before_its_metadata_is_judged(s3, archive_api) -> None:
    pdf = b"%PDF-1.4 night summary"
    # Given a PDF registered with its metadata
    ingester.upload_file_and_ingest_to_archive(_named(pdf, "-summary.pdf"), file_metadata=dict(PDF_METADATA))
    # When the same bytes come again without metadata, then they are already there (not a bad file)
    with pytest.raises(ingester.NonFatalDoNotRetryError, match="already exists"):
        ingester.upload_file_and_ingest_to_archive(_named(pdf, "-summary.pdf"))
    # And the same on the function's path: a landing PDF without user metadata is already ingested, not rejected
    from lambda_ingest.ingest import ingest_object
    from tests.conftest import LANDING

    s3.put_object(Bucket=LANDING, Key=f"pdf/{NAME}-summary.pdf", Body=pdf)
    result = ingest_object(LANDING, f"pdf/{NAME}-summary.pdf")
    assert result.status == "already_ingested"
    assert result.version_id == archive_api.frames()[0]["version_set"][0]["key"]
    assert s3.list_objects_v2(Bucket=LANDING)["KeyCount"] == 0
    assert len(s3.list_object_versions(Bucket=ARCHIVE)["Versions"]) == 1
    # While different bytes without metadata are still refused for the metadata they lack
    with pytest.raises(ingester.DoNotRetryError, match="missing required metadata"):
        ingester.upload_file_and_ingest_to_archive(_named(pdf + b" v2", "-summary.pdf"))


PDF_METADATA = {
    "PROPID": "LCO2015B-001",
    "DATE-OBS": "2015-12-19T18:22:15",
    "DAY-OBS": "20151219",
    "INSTRUME": "kb70",
    "SITEID": "cpt",
    "TELID": "1m0a",
    "OBSTYPE": "EXPOSE",
    "BLKUID": "123456",
}


# --- FILESTORE_TYPE ---------------------------------------------------------------------------------------


def test_dummy_file_store_registers_with_the_md5_as_key_and_stores_nothing(s3, archive_api, monkeypatch) -> None:
    set_env(monkeypatch, FILESTORE_TYPE="dummy")
    fileobj = frame(seed=30)
    md5 = hashlib.md5(fileobj.getvalue()).hexdigest()
    # Step by step, as ocs_ingester's docstring: the version is ocs_archive's dummy store's
    version = ingester.upload_file_to_file_store(fileobj)
    assert version == {"key": md5, "md5": md5, "extension": ".fits.fz"}
    record = ingester.upload_file_and_ingest_to_archive(frame(seed=31))
    assert record["version_set"][0]["key"] == record["version_set"][0]["md5"]
    assert [v["key"] for v in archive_api.frames()[0]["version_set"]] == [record["version_set"][0]["md5"]]
    assert "Versions" not in s3.list_object_versions(Bucket=ARCHIVE)


def test_local_file_store_keeps_a_hostile_header_inside_its_root(s3, archive_api, monkeypatch, tmp_path) -> None:
    from lambda_ingest.local.synthetic import lco_header

    root = tmp_path / "store"
    set_env(monkeypatch, FILESTORE_TYPE="local", FILESYSTEM_STORAGE_ROOT_DIR=str(root))
    # Given a frame whose SITEID would climb out of the store's root
    hostile = frame(seed=32, header=lco_header(NAME, SITEID=".."))
    # When it is ingested, then it is refused as a bad file, and nothing is written anywhere
    with pytest.raises(ingester.DoNotRetryError, match="outside FILESYSTEM_STORAGE_ROOT_DIR"):
        ingester.upload_file_and_ingest_to_archive(hostile)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert archive_api.frames() == []


# --- thumbnails --------------------------------------------------------------------------------------------


def test_thumbnail_is_posted_to_thumbnails_for_its_frame(s3, archive_api) -> None:
    ingester.upload_file_and_ingest_to_archive(frame(seed=15))
    image = jpeg(b"small")
    record = ingester.upload_file_and_ingest_to_archive(
        image,
        path=f"{NAME}-small.jpg",
        file_metadata=dict(THUMBNAIL_METADATA),
        is_thumbnail=True,
        thumbnail_size="small",
    )
    # Registered with thumbnails/, as ocs_ingester's post_thumbnail; like it, thumbnail_id is the 201's `id`,
    # which the real archive does not send (its thumbnail answer is an upsert without id)
    [thumbnail] = archive_api.thumbnails()
    assert record["thumbnail_id"] is None
    assert "frameid" not in record
    assert (thumbnail["frame_basename"], thumbnail["size"], thumbnail["extension"]) == (NAME, "small", ".jpg")
    assert thumbnail["basename"] == f"{NAME}-small"
    # Stored under ocs_archive's thumbnail path, as a JPEG, at the version the archive holds
    key = f"cpt/kb70/20151219/thumbnails/{NAME}-small.jpg"
    stored = s3.get_object(Bucket=ARCHIVE, Key=key, VersionId=thumbnail["key"])
    assert stored["Body"].read() == image.getvalue()
    assert stored["ContentType"] == "image/jpg"
    assert record["version_set"][0]["key"] == thumbnail["key"]


def test_thumbnail_needs_its_size_and_metadata(s3, archive_api) -> None:
    with pytest.raises(ingester.DoNotRetryError, match="thumbnail_size must be provided"):
        ingester.upload_file_and_ingest_to_archive(
            jpeg(), path=f"{NAME}-small.jpg", file_metadata=dict(THUMBNAIL_METADATA), is_thumbnail=True
        )
    incomplete = {k: v for k, v in THUMBNAIL_METADATA.items() if k != "SITEID"}
    with pytest.raises(ingester.DoNotRetryError, match="missing required metadata SITEID"):
        ingester.upload_file_and_ingest_to_archive(
            jpeg(), path=f"{NAME}-small.jpg", file_metadata=incomplete, is_thumbnail=True, thumbnail_size="small"
        )
    assert archive_api.thumbnails() == []
    assert "Versions" not in s3.list_object_versions(Bucket=ARCHIVE)


def test_thumbnail_of_a_frame_the_archive_lacks_is_registered_against_a_hidden_frame(s3, archive_api) -> None:
    # Given no frame with this basename in the archive, when its thumbnail is ingested
    record = ingester.upload_file_and_ingest_to_archive(
        jpeg(b"early"),
        path=f"{NAME}-large.jpg",
        file_metadata=dict(THUMBNAIL_METADATA),
        is_thumbnail=True,
        thumbnail_size="large",
    )
    # Then, as the real archive does, the thumbnail is registered and its frame created hidden (the frame's own
    # POST later fills it in)
    [thumbnail] = archive_api.thumbnails()
    assert thumbnail["key"] == record["version_set"][0]["key"]
    [frame] = archive_api.frames()
    assert (frame["basename"], frame["hidden"]) == (NAME, True)
