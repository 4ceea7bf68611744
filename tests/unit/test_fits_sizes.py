"""FITS data-unit size arithmetic (fits_header.data_unit_size) against astropy, HDU kind by HDU kind.

The header walk skips every data unit by arithmetic alone (NAXISn, BITPIX, PCOUNT, GCOUNT), never
fetching it: one wrong size and every later header is read at the wrong offset. Each case is written by
astropy; astropy's own answer (where the next header starts, and the HDU's unpadded data size) is the
reference.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from lambda_ingest.fits_header import BLOCK, data_unit_size, walk_headers

CARD = 80


def image(dtype: str, shape: tuple[int, ...], *, primary: bool = False) -> fits.PrimaryHDU | fits.ImageHDU:
    data = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    return fits.PrimaryHDU(data) if primary else fits.ImageHDU(data)


def variable_length_table() -> fits.BinTableHDU:
    # A "P" column stores its arrays in the heap after the table: PCOUNT counts the heap's bytes.
    rows = np.array([np.arange(n, dtype=np.int32) for n in (3, 700, 0, 41)], dtype=object)
    return fits.BinTableHDU.from_columns(
        [fits.Column(name="spec", format="PJ()", array=rows), fits.Column(name="flux", format="E", array=np.ones(4))]
    )


def compressed_image() -> fits.CompImageHDU:
    # A tile-compressed image is a BINTABLE whose compressed tiles live in the heap (PCOUNT, maybe THEAP).
    rng = np.random.default_rng(3)
    return fits.CompImageHDU(rng.normal(1000, 30, (120, 170)).astype(np.float32), compression_type="RICE_1")


def random_groups() -> fits.GroupsHDU:
    # NAXIS1 = 0 and GROUPS = T: GCOUNT groups of PCOUNT parameters plus NAXIS2 x ... x NAXISm values.
    shape = (5, 1, 3, 4)
    pars = [np.arange(5, dtype=np.float32), np.arange(5, dtype=np.float32) * 2]
    data = fits.GroupData(
        np.arange(60, dtype=np.float32).reshape(shape), parnames=["UU", "VV"], pardata=pars, bitpix=-32
    )
    return fits.GroupsHDU(data)


def ascii_table() -> fits.TableHDU:
    names = fits.Column(name="name", format="A12", array=np.array(["a", "bb", "ccc"]))
    return fits.TableHDU.from_columns([names, fits.Column(name="n", format="I5", array=np.arange(3))])


def zero_length_axis() -> fits.ImageHDU:
    hdu = fits.ImageHDU()
    hdu.header["NAXIS"] = 2  # a declared image with an empty axis has no data unit
    hdu.header["NAXIS1"] = 10
    hdu.header["NAXIS2"] = 0
    return hdu


# name -> the HDUs after the primary (or the whole list when it starts with a primary/groups HDU)
CASES: dict[str, Callable[[], list[Any]]] = {
    "empty-primary": lambda: [fits.PrimaryHDU()],
    "primary-uint8": lambda: [image("uint8", (7, 11), primary=True)],
    "primary-int16": lambda: [image("int16", (40, 37), primary=True)],
    "primary-int32-3d": lambda: [image("int32", (3, 9, 13), primary=True)],
    "image-int64": lambda: [fits.PrimaryHDU(), image("int64", (17, 19))],
    "image-float32": lambda: [fits.PrimaryHDU(), image("float32", (61, 59))],
    "image-float64-1d": lambda: [fits.PrimaryHDU(), image("float64", (1000,))],
    "exact-block": lambda: [fits.PrimaryHDU(), image("int16", (BLOCK // 2,))],  # no padding at all
    "zero-length-axis": lambda: [fits.PrimaryHDU(), zero_length_axis()],
    "bintable": lambda: [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("x", "D", array=np.ones(9))])],
    "bintable-heap": lambda: [fits.PrimaryHDU(), variable_length_table()],
    "compressed-image": lambda: [fits.PrimaryHDU(), compressed_image()],
    "ascii-table": lambda: [fits.PrimaryHDU(), ascii_table()],
    "random-groups": lambda: [random_groups()],
    "mixed": lambda: [image("int16", (5, 5), primary=True), compressed_image(), variable_length_table(), ascii_table()],
}  # fmt: skip


def written(hdus: list[Any], path: Path) -> bytes:
    fits.HDUList(hdus).writeto(path)  # a real file: astropy's random-groups writer needs one
    return path.read_bytes()


def header_cards(raw: bytes) -> dict[bytes, bytes]:
    """keyword -> card of a header's bytes, as the walk collects them (the first card of each keyword)."""
    cards: dict[bytes, bytes] = {}
    for i in range(0, len(raw), CARD):
        card = raw[i : i + CARD]
        cards.setdefault(card[:8].rstrip(), card)
    return cards


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_data_unit_size_is_astropys(make: Callable[[], list[Any]], tmp_path: Path) -> None:
    # Given a FITS file written by astropy
    data = written(make(), tmp_path / "case.fits")
    with fits.open(tmp_path / "case.fits", disable_image_compression=True) as hdul:
        hdul.verify("exception")
        for index, hdu in enumerate(hdul):
            info = hdul.fileinfo(index)
            # When the size of its data unit is computed from its header cards alone
            size = data_unit_size(header_cards(data[info["hdrLoc"] : info["datLoc"]]), index)
            # Then it is astropy's unpadded data size, and padded it reaches exactly where the next HDU starts
            assert size == hdu.size, f"HDU {index} ({type(hdu).__name__})"
            assert -(-size // BLOCK) * BLOCK == info["datSpan"]
    assert info["datLoc"] + info["datSpan"] == len(data)


@pytest.mark.parametrize("name", ["mixed", "compressed-image", "bintable-heap", "random-groups"])
def test_walk_skips_every_data_unit_to_the_header_it_needs(name: str, tmp_path: Path) -> None:
    # Given a file whose last HDU alone carries the wanted keyword
    hdus = CASES[name]()
    hdus[-1].header["WANTED"] = "here"
    data = written(hdus, tmp_path / "case.fits")

    def read(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    # When the header walk looks for it
    scan = walk_headers(read, len(data), ("WANTED",))
    # Then it lands on the last HDU's header, at the very offset astropy wrote it: every header before it is
    # where it was, every data unit before it stood in by zeros
    assert scan.validated_hdu == len(hdus) - 1
    with fits.open(tmp_path / "case.fits", disable_image_compression=True) as hdul:
        spans = [hdul.fileinfo(i) for i in range(len(hdul))]
    last = spans[-1]
    assert len(scan.fits_bytes) == last["datLoc"]
    for info in spans:
        header = slice(info["hdrLoc"], info["datLoc"])
        assert scan.fits_bytes[header] == data[header]
        assert not any(scan.fits_bytes[info["datLoc"] : info["datLoc"] + info["datSpan"]])
    assert b"WANTED  = 'here " in scan.fits_bytes[last["hdrLoc"] :]
