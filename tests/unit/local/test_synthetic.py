"""Synthetic LCO frames: ocs_archive accepts them, records match headers, sizes and bad inputs are as asked."""

from __future__ import annotations

import io
import tarfile
import tracemalloc
import warnings
import zlib
from pathlib import Path

import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import FITSFixedWarning
from ocs_archive.input.file import File, FileSpecificationException
from ocs_archive.input.filefactory import FileFactory
from ocs_archive.input.lcotarwithfitsfile import LcoTarWithFitsFile

from lambda_ingest.local.synthetic import (
    DEFAULT_BASENAME,
    DEFAULT_SPECTRUM_BASENAME,
    frame_name,
    gzip_bomb,
    header_without_end,
    huge_header_frame,
    lco_header,
    make_frame_bytes,
    parse_frame_name,
    random_bytes,
    truncated_data_frame,
    write_frame,
    write_tarball,
)

REQUIRED = ("PROPID", "DATE-OBS", "DAY-OBS", "INSTRUME", "SITEID", "TELID", "OBSTYPE", "BLKUID")
RAW = DEFAULT_BASENAME
PROCESSED = frame_name(rlevel=91, ext="")
BIAS = frame_name(site="coj", telnum=11, instrument="fl08", day="20151216", seq=49, obstype_letter="b", ext="")


def archive_record(path: Path, datafile_class: type | None = None, *, area: bool = True) -> tuple[object, dict]:
    """What the archive would be sent for this file, built by ocs_archive exactly as the ingester does."""
    with open(path, "rb") as fh, warnings.catch_warnings():
        # Real LCO headers make astropy's WCS fix OBSGEO-L/B/H from OBSGEO-X/Y/Z, with a warning.
        warnings.simplefilter("ignore", FITSFixedWarning)
        opened = File(fh, str(path))
        cls = datafile_class or FileFactory.get_datafile_class_for_extension(opened.extension)
        datafile = cls(opened, {})
        record = datafile.get_header_data().get_archive_frame_data()
        record["area"] = datafile.get_wcs_corners() if area else None
        record["path"] = datafile.get_filestore_path()
        record["headers"] = datafile.get_header_data().get_headers()
        return datafile, record


def test_frame_name_round_trips_through_parse() -> None:
    # Given the parts of an LCO frame name
    name = frame_name(site="lsc", tel="1m0", telnum=5, instrument="kb78", day="20151109", seq=179, rlevel=90)

    # When it is written and parsed back
    parts = parse_frame_name(name)

    # Then the convention holds and nothing is lost
    assert name == "lsc1m005-kb78-20151109-0179-e90.fits.fz"
    assert parts is not None
    assert (parts.site, parts.telnum, parts.instrument, parts.seq, parts.rlevel) == ("lsc", 5, "kb78", 179, 90)
    assert parts.basename + ".fits.fz" == name
    assert parse_frame_name("bias_kb70_20151221_bin2x2.fits") is None


@pytest.mark.parametrize(
    ("basename", "obstype", "rlevel"),
    [
        (RAW, "EXPOSE", None),
        (PROCESSED, "EXPOSE", 91),
        (BIAS, "BIAS", None),
        (DEFAULT_SPECTRUM_BASENAME, "SPECTRUM", None),
    ],
)
def test_lco_header_is_consistent_with_the_name(basename: str, obstype: str, rlevel: int | None) -> None:
    # Given an LCO basename
    parts = parse_frame_name(basename)
    assert parts is not None

    # When its header is built
    header = lco_header(basename)

    # Then the name's parts, the required keywords and realistic extras are all there
    assert all(keyword in header for keyword in REQUIRED)
    assert header["SITEID"] == parts.site
    assert header["TELID"] == f"{parts.tel}a"
    assert header["TELESCOP"] == f"{parts.tel}-{parts.telnum:02d}"
    assert header["INSTRUME"] == parts.instrument
    assert header["DAY-OBS"] == parts.day
    assert header["DATE-OBS"][:10].replace("-", "") >= parts.day
    assert header["OBSTYPE"] == obstype
    assert header["ORIGNAME"] == f"{parts.raw_basename}.fits"
    assert header.get("RLEVEL") == rlevel
    for keyword in ("MOLUID", "REQNUM", "TRACKNUM", "UTSTOP", "FILTER", "OBJECT", "EXPTIME", "RA", "DEC"):
        assert keyword in header
    for keyword in ("CD1_1", "CD2_2", "CRPIX1", "CRVAL1", "CTYPE1"):
        assert keyword in header
    assert ("L1IDBIAS" in header) == (rlevel is not None)
    assert lco_header(basename).tostring() == header.tostring()  # deterministic


def test_lco_header_overrides_and_drops_cards() -> None:
    # Given overrides (dashed keywords through a dict) and cards to drop
    header = lco_header(RAW, OBJECT="M87", **{"DAY-OBS": "20151220"}, EXPTIME=(42.0, "custom"), drop=("BLKUID",))

    # Then the header carries them
    assert header["OBJECT"] == "M87"
    assert header["DAY-OBS"] == "20151220"
    assert (header["EXPTIME"], header.comments["EXPTIME"]) == (42.0, "custom")
    assert "BLKUID" not in header


@pytest.mark.parametrize(
    ("basename", "extension", "datafile", "config", "level", "stage", "has_area"),
    [
        (RAW, ".fits", "FitsFile", "EXPOSE", 0, "raw", True),
        (RAW, ".fits.fz", "LcoFitsFile", "EXPOSE", 0, "raw", True),
        (PROCESSED, ".fits", "FitsFile", "EXPOSE", 91, "processed", True),
        (PROCESSED, ".fits.fz", "LcoFitsFile", "EXPOSE", 91, "processed", True),
        (BIAS, ".fits.fz", "LcoFitsFile", "BIAS", 0, "raw", True),
        (PROCESSED, "_cat.fits", "FitsFile", "EXPOSE", 91, "processed", False),
        (PROCESSED, "_cat.fits.fz", "LcoFitsFile", "CATALOG", 91, "processed", False),
    ],
)
def test_ocs_archive_accepts_frames_and_the_record_matches_the_headers(
    tmp_path: Path, basename: str, extension: str, datafile: str, config: str, level: int, stage: str, has_area: bool
) -> None:
    # Given a synthetic frame on disk
    path = tmp_path / f"{basename}{extension}"
    write_frame(path, basename=basename, extension=extension)
    header = lco_header(basename)

    # When ocs_archive builds the archive record
    df, record = archive_record(path)

    # Then the record comes from the headers, the path is canonical and raw images have a footprint
    assert type(df).__name__ == datafile
    assert record["site_id"] == header["SITEID"]
    assert record["telescope_id"] == header["TELID"]
    assert record["instrument_id"] == header["INSTRUME"]
    assert record["observation_day"] == header["DAY-OBS"]
    assert record["observation_date"] == header["DATE-OBS"]
    assert record["proposal_id"] == header["PROPID"]
    assert record["exposure_time"] == header["EXPTIME"]
    assert record["primary_optical_element"] == header["FILTER"]
    assert record["observation_id"] == header["BLKUID"]
    assert record["configuration_type"] == config
    assert record["reduction_level"] == level
    assert record["public_date"]
    stem, suffix = path.name.split(".", 1)
    canonical = f"{header['SITEID']}/{header['INSTRUME']}/{header['DAY-OBS']}/{stage}/{stem}.{suffix}"
    assert record["path"] == canonical
    if has_area:
        assert record["area"]["type"] == "Polygon"
        ring = record["area"]["coordinates"][0]
        assert len(ring) == 5 and ring[0] == ring[-1]
        assert abs(ring[0][0] - header["CRVAL1"]) < 1 and abs(ring[0][1] - header["CRVAL2"]) < 1
    else:
        assert record["area"] is None


def test_science_request_ids_are_numbers_and_calibrations_have_none(tmp_path: Path) -> None:
    # Given a science frame and a bias
    science, bias = tmp_path / f"{RAW}.fits", tmp_path / f"{BIAS}.fits"
    write_frame(science, basename=RAW)
    write_frame(bias, basename=BIAS)

    # When ocs_archive reads them
    _, science_record = archive_record(science)
    _, bias_record = archive_record(bias)

    # Then the science request id is an int-like string and the bias's UNSPECIFIED became null
    assert science_record["request_id"].isdigit() and int(science_record["request_id"]) < 2**31
    assert bias_record["request_id"] is None
    assert bias_record["target_name"] == ""  # OBJECT N/A normalised


@pytest.mark.parametrize("extension", [".fits", ".fits.fz", "_cat.fits"])
@pytest.mark.parametrize("data_bytes", [0, 64 * 1024, 1_000_000])
def test_sizes_are_as_asked_within_padding(tmp_path: Path, extension: str, data_bytes: int) -> None:
    # Given a requested data size
    path = tmp_path / f"{PROCESSED}{extension}"

    # When the frame is written
    written = write_frame(path, basename=PROCESSED, extension=extension, data_bytes=data_bytes)

    # Then what is reported is what is on disk, FITS-blocked, and the data part is about what was asked
    size = path.stat().st_size
    assert written == size and size % 2880 == 0
    with fits.open(path) as hdul:
        headers = sum(len(hdu.header.tostring()) for hdu in hdul)
    slack = 2 * 2880 + 16 * 1024  # padding, and one image row or one compressed tile more or less
    assert abs((size - headers) - data_bytes) <= slack


def test_same_seed_same_bytes_other_seed_other_data_same_header() -> None:
    # Given the same frame written three times
    first = make_frame_bytes(RAW, ".fits.fz", seed=1)
    again = make_frame_bytes(RAW, ".fits.fz", seed=1)
    other = make_frame_bytes(RAW, ".fits.fz", seed=2)

    # Then output is reproducible and the seed changes the md5 but not the header
    assert first == again
    assert first != other
    with fits.open(io.BytesIO(first)) as a, fits.open(io.BytesIO(other)) as b:
        assert a[1].header.tostring() == b[1].header.tostring()


def test_fpack_frame_is_a_valid_tile_compressed_image() -> None:
    # Given a compressed frame big enough to repeat its tile template several times
    data = make_frame_bytes(RAW, ".fits.fz", data_bytes=2 * 1024 * 1024)

    # When astropy opens and decompresses it
    with fits.open(io.BytesIO(data)) as hdul:
        hdul.verify("exception")
        primary, image = hdul
        pixels = image.data

        # Then it has the fpack layout and every tile decompresses
        assert primary.header["NAXIS"] == 0
        assert isinstance(image, fits.CompImageHDU)
        assert pixels.shape == (image.header["NAXIS2"], image.header["NAXIS1"])
        assert image.header["CRPIX2"] == pixels.shape[0] / 2
        assert 900 < pixels.mean() < 1100
    with fits.open(io.BytesIO(data), disable_image_compression=True) as raw:
        assert raw[1].header["ZCMPTYPE"] == "RICE_1"
        assert raw[1].header["EXTNAME"] == "COMPRESSED_IMAGE"


def test_catalogue_has_a_header_only_primary_and_a_source_table() -> None:
    # Given a catalogue
    data = make_frame_bytes(PROCESSED + "_cat", ".fits", data_bytes=10_000)

    # When it is opened
    with fits.open(io.BytesIO(data)) as hdul:
        # Then the primary holds the frame header and no data; the table holds sources
        assert hdul[0].data is None and hdul[0].header["SITEID"] == "cpt"
        assert "CD1_1" not in hdul[0].header
        table = hdul[1].data
        assert len(table) == hdul[0].header["SEXNFIN"] > 100
        assert list(table["NUMBER"][:3]) == [1, 2, 3]


def test_tarball_is_a_spectra_bundle_ocs_archive_reads(tmp_path: Path) -> None:
    # Given a spectra bundle with an extra member
    path = tmp_path / f"{DEFAULT_SPECTRUM_BASENAME}.tar.gz"
    written = write_tarball(path, basename=DEFAULT_SPECTRUM_BASENAME, members=[("extra.txt", b"hello")])

    # When it is listed and read by ocs_archive (generic and LCO tar readers)
    with tarfile.open(path) as tar:
        names = tar.getnames()
    _, record = archive_record(path)
    _, lco_record = archive_record(path, LcoTarWithFitsFile)

    # Then the FITS member comes first, carries the header, and the record is a spectrum
    assert written == path.stat().st_size
    assert names == [f"{DEFAULT_SPECTRUM_BASENAME}.fits", "extra.txt"]
    assert record["configuration_type"] == "SPECTRUM"
    assert record["instrument_id"] == "en06"
    assert record["path"] == f"ogg/en06/20151219/raw/{DEFAULT_SPECTRUM_BASENAME}.tar.gz"
    assert lco_record["reduction_level"] == 90  # LCO rule for bundles without RLEVEL
    again = io.BytesIO()
    write_tarball(again, members=[("extra.txt", b"hello")])
    assert again.getvalue() == path.read_bytes()  # reproducible, gzip and tar times included


@pytest.mark.slow
@pytest.mark.parametrize("extension", [".fits", ".fits.fz"])
def test_large_frames_stream_with_bounded_memory(tmp_path: Path, extension: str) -> None:
    # Given a 200 MB frame to write
    path = tmp_path / f"{RAW}{extension}"
    data_bytes = 200 * 1024 * 1024

    # When it is written while Python allocations are traced
    tracemalloc.start()
    try:
        written = write_frame(path, basename=RAW, extension=extension, data_bytes=data_bytes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then memory stayed small, the size is right and astropy opens it without reading the data
    assert peak < 16 * 1024 * 1024
    assert written == path.stat().st_size and abs(written - data_bytes) < 64 * 1024
    with fits.open(path) as hdul:
        hdul.verify("exception")
        header = hdul[-1].header
        assert header["SITEID"] == "cpt" and header["NAXIS1"] * header["NAXIS2"] > 0
        if extension == ".fits.fz":
            assert hdul[1].section[-2:, :4].shape == (2, 4)  # the last tiles decompress too


# ------------------------------------------------------------------------------------------------ bad inputs


def test_random_bytes_are_not_fits(tmp_path: Path) -> None:
    # Given random bytes named like a frame
    path = tmp_path / f"{RAW}.fits"
    path.write_bytes(random_bytes(8192, seed=3))

    # Then astropy cannot open them and ocs_archive rejects them
    assert random_bytes(8192, seed=3) == path.read_bytes() != random_bytes(8192, seed=4)
    with pytest.raises(OSError):
        fits.open(path).close()
    with pytest.raises(FileSpecificationException):
        archive_record(path)


def test_header_without_end_is_rejected() -> None:
    # Given header blocks without an END card
    data = header_without_end()

    # Then it is block-aligned, looks like FITS, and astropy refuses it
    assert len(data) % 2880 == 0 and data.startswith(b"SIMPLE  =")
    assert b"END" + b" " * 77 not in data
    with pytest.raises(OSError, match="END"):
        fits.open(io.BytesIO(data)).close()


def test_truncated_data_frame_claims_more_data_than_present() -> None:
    # Given a frame cut short in its data unit
    data = truncated_data_frame(data_bytes=64 * 1024)

    # When astropy opens it
    with pytest.warns(AstropyUserWarning, match="truncated"), fits.open(io.BytesIO(data)) as hdul:
        header = hdul[0].header

    # Then the header is complete but claims a bigger data unit than the file holds
    claimed = header["NAXIS1"] * header["NAXIS2"] * abs(header["BITPIX"]) // 8
    assert claimed >= 64 * 1024
    assert len(data) < len(header.tostring()) + claimed


def test_huge_header_frame_is_valid_but_huge(tmp_path: Path) -> None:
    # Given a frame with 10000 extra header cards
    path = tmp_path / f"{RAW}.fits"
    path.write_bytes(huge_header_frame(cards=10000))

    # Then it is valid FITS whose header alone is ~800 kB, and still a valid archive record
    with fits.open(path) as hdul:
        assert len(hdul[0].header) > 10000
        assert len(hdul[0].header.tostring()) > 800_000
    _, record = archive_record(path, area=False)  # astropy's WCS on 10000 cards alone takes seconds
    assert record["site_id"] == "cpt"


def test_gzip_bomb_inflates_far_beyond_its_size(tmp_path: Path) -> None:
    # Given a 64 MB bomb
    path = tmp_path / "bomb.tar.gz"
    decompressed = 64 * 1024 * 1024

    # When it is built and inflated in a streaming way
    written = gzip_bomb(path, decompressed)
    inflate = zlib.decompressobj(wbits=31)
    total = 0
    head = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            out = inflate.decompress(chunk)
            head = head or out[:4096]
            total += len(out)

    # Then it is tiny compressed, huge inflated, and starts as a tar whose member is a FITS header
    assert written == path.stat().st_size
    assert written < decompressed // 500
    assert total >= decompressed
    assert head[:100].rstrip(b"\0").decode() == f"{DEFAULT_SPECTRUM_BASENAME}.fits"
    assert head[512:521] == b"SIMPLE  ="
