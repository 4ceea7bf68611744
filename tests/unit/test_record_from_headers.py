"""The record built from header blocks only equals the one ocs_ingester 3.2.0 builds from the whole file."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest

from lambda_ingest.errors import InvalidFileError, RecordError
from lambda_ingest.fits_header import HeaderLimits, walk_headers
from lambda_ingest.record import build_record, datafile_class, header_stream, json_safe, required_headers_for
from tests.conftest import real_frames


def file_reader(data: bytes, log: list[tuple[int, int]]):
    def read(offset: int, length: int) -> bytes:
        log.append((offset, length))
        return data[offset : offset + length]

    return read


def ocs_ingester_record(path: Path) -> dict:
    from ocs_ingester.ingester import validate_fits_and_create_archive_record

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open(path, "rb") as fileobj:
            return json_safe(validate_fits_and_create_archive_record(fileobj, path=str(path)))


@pytest.mark.parametrize("path", real_frames(), ids=lambda p: p.name)
def test_header_only_record_equals_ocs_ingester_whole_file_record(path: Path) -> None:
    # Given a real LCO frame
    data = path.read_bytes()
    reads: list[tuple[int, int]] = []
    required = required_headers_for(
        datafile_class("".join(path.suffixes[-2:]) if path.name.endswith(".fz") else ".fits")
    )
    # When only its header blocks are read and handed to ocs_archive
    scan = walk_headers(file_reader(data, reads), len(data), required)
    record = build_record(header_stream(scan.fits_bytes, path.name), path.name)
    # Then the record is the one ocs_ingester builds from the whole file
    assert record.payload == ocs_ingester_record(path)
    # And no read went past the validating header by more than the read-ahead of one request
    assert scan.bytes_read <= HeaderLimits().initial_read
    assert len(reads) == 1


def test_missing_required_header_is_named() -> None:
    from lambda_ingest.local.synthetic import lco_header, make_frame_bytes

    name = "cpt1m010-kb70-20151219-0073-e00"
    data = make_frame_bytes(basename=name, extension=".fits", header=lco_header(name, drop=("DAY-OBS",)))
    scan = walk_headers(file_reader(data, []), len(data), required_headers_for(datafile_class(".fits")))
    assert scan.validated_hdu is None
    assert scan.missing == ("DAY-OBS",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00\x01garbage" * 400, "not a FITS file"),
        (b"SIMPLE  =                    T" + b" " * 50 + b"X" * 80 * 35, "no END card"),
    ],
    ids=["empty", "random", "no-end"],
)
def test_not_fits_is_an_explained_invalid_file(data: bytes, message: str) -> None:
    with pytest.raises(InvalidFileError, match=message):
        walk_headers(file_reader(data, []), len(data), ("PROPID",))


def test_header_card_limit_is_enforced() -> None:
    cards = [b"SIMPLE  =                    T".ljust(80)] + [
        f"KEY{i:05d} = {i}".encode().ljust(80) for i in range(10000)
    ]
    data = b"".join(cards) + b"END".ljust(80)
    data += b" " * (-len(data) % 2880)
    with pytest.raises(InvalidFileError, match="HEADER_MAX_CARDS"):
        walk_headers(file_reader(data, []), len(data), ("PROPID",), HeaderLimits(max_cards=5000))


def test_undefined_header_values_become_null() -> None:
    from astropy.io import fits

    from lambda_ingest.local.synthetic import lco_header, make_frame_bytes

    name = "cpt1m010-kb70-20151219-0073-e00"
    header = lco_header(name)
    header["FOCOBOFF"] = fits.card.Undefined()
    data = make_frame_bytes(basename=name, extension=".fits", header=header)
    scan = walk_headers(file_reader(data, []), len(data), required_headers_for(datafile_class(".fits")))
    record = build_record(header_stream(scan.fits_bytes, name + ".fits"), name + ".fits")
    assert "FOCOBOFF" in record.payload["headers"]
    assert record.payload["headers"]["FOCOBOFF"] is None


def test_over_long_site_id_is_a_clear_record_error() -> None:
    from lambda_ingest.local.synthetic import lco_header, make_frame_bytes

    name = "cpt1m010-kb70-20151219-0073-e00"
    data = make_frame_bytes(basename=name, extension=".fits", header=lco_header(name, SITEID="cptx"))
    scan = walk_headers(file_reader(data, []), len(data), required_headers_for(datafile_class(".fits")))
    with pytest.raises(RecordError, match="site_id 'cptx' is 4 characters; the archive allows at most 3"):
        build_record(io.BytesIO(scan.fits_bytes), name + ".fits")
