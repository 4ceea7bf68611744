"""Synthetic LCO-style frames for tests, the demo and the benchmark.

Everything here is deterministic (seeded), so tests need no fixture files. Headers follow the LCO data
dictionary as seen in real frames: the cards, their order and comments come from ``lco-header.txt`` (a
processed frame's header, shipped with the package); the values that depend on the frame (site,
telescope, instrument, timing, proposal, block/molecule/request ids, pointing, WCS, pipeline cards) are
computed here. Data units are filler: only their size and the FITS structure are meaningful.

Layouts written:

- ``.fits``: primary HDU with the header and an int16 image, streamed in chunks (any size, bounded memory).
- ``.fits.fz``: fpack layout, an empty primary HDU and a RICE_1 tile-compressed image (BINTABLE + heap).
  A few tiles are compressed once by astropy and repeated, so 1 GB files cost little memory and time.
- ``_cat.fits`` / ``_cat.fits.fz``: primary with the header and no data, then a BINTABLE source catalogue.
- ``.tar.gz``: a spectra bundle whose first member is a FITS file carrying the full header.

Bad inputs for reliability tests: :func:`random_bytes`, :func:`header_without_end`,
:func:`truncated_data_frame`, :func:`huge_header_frame`, :func:`gzip_bomb`.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import importlib.resources
import io
import math
import os
import random
import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from astropy.io import fits

__all__ = [
    "DEFAULT_BASENAME",
    "DEFAULT_SPECTRUM_BASENAME",
    "FrameName",
    "frame_name",
    "gzip_bomb",
    "header_without_end",
    "huge_header_frame",
    "lco_header",
    "make_frame_bytes",
    "parse_frame_name",
    "random_bytes",
    "truncated_data_frame",
    "write_frame",
    "write_tarball",
]

BLOCK = 2880  # FITS logical record
_CHUNK = 1 << 20  # write granularity: bounds memory for any file size
_TAR_BLOCK = 512
_TAR_RECORD = tarfile.RECORDSIZE
_FIXED_MTIME = 1450549335  # 2015-12-19T18:22:15Z: tar member times, so bundles are byte-reproducible
_TEMPLATE = "lco-header.txt"  # a processed LCO frame's header: the cards, their order and comments

DEFAULT_BASENAME = "cpt1m010-kb70-20151219-0073-e00"
DEFAULT_SPECTRUM_BASENAME = "ogg2m001-en06-20151219-0012-e00"

Target = str | os.PathLike[str] | BinaryIO


# --------------------------------------------------------------------------------------------------------
# Frame names
# --------------------------------------------------------------------------------------------------------

_NAME_RE = re.compile(
    r"^(?P<site>[a-z]{3})(?P<tel>\d+m\d)(?P<telnum>\d{2})-(?P<instrument>[a-z]{2}\d{2})-(?P<day>\d{8})"
    r"-(?P<seq>\d{4})-(?P<letter>[a-z])(?P<rlevel>\d{2})(?P<suffix>.*)$"
)


@dataclass(frozen=True)
class FrameName:
    """The parts of an LCO frame basename, e.g. ``cpt1m010-kb70-20151219-0073-e00``."""

    site: str = "cpt"
    tel: str = "1m0"
    telnum: int = 10
    instrument: str = "kb70"
    day: str = "20151219"
    seq: int = 73
    letter: str = "e"
    rlevel: int = 0
    suffix: str = ""  # e.g. "_cat"

    @property
    def basename(self) -> str:
        return (
            f"{self.site}{self.tel}{self.telnum:02d}-{self.instrument}-{self.day}-{self.seq:04d}"
            f"-{self.letter}{self.rlevel:02d}{self.suffix}"
        )

    @property
    def raw_basename(self) -> str:
        """The name the instrument wrote (ORIGNAME without extension): level 00, no suffix."""
        return f"{self.site}{self.tel}{self.telnum:02d}-{self.instrument}-{self.day}-{self.seq:04d}-{self.letter}00"


def parse_frame_name(name: str) -> FrameName | None:
    """Parse an LCO basename (an extension is ignored); None when it does not follow the convention."""
    base = os.path.basename(name).split(".", 1)[0]
    m = _NAME_RE.match(base)
    if m is None:
        return None
    return FrameName(
        site=m["site"],
        tel=m["tel"],
        telnum=int(m["telnum"]),
        instrument=m["instrument"],
        day=m["day"],
        seq=int(m["seq"]),
        letter=m["letter"],
        rlevel=int(m["rlevel"]),
        suffix=m["suffix"],
    )


def frame_name(
    site: str = "cpt",
    tel: str = "1m0",
    telnum: int = 10,
    instrument: str = "kb70",
    day: str = "20151219",
    seq: int = 73,
    obstype_letter: str = "e",
    rlevel: int = 0,
    ext: str = ".fits.fz",
    suffix: str = "",
) -> str:
    """An LCO file name, e.g. ``cpt1m010-kb70-20151219-0073-e00.fits.fz``; ``ext=""`` gives the basename."""
    parts = FrameName(site, tel, telnum, instrument, day, seq, obstype_letter, rlevel, suffix)
    return parts.basename + ext


# --------------------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    name: str
    lat: float
    lon: float
    height: float


_SITES = {
    "cpt": _Site("LCOGT node at SAAO", -32.3805542, 20.8101815, 1807.0),
    "coj": _Site("LCOGT node at Siding Spring Observatory", -31.2727986, 149.0708771, 1165.0),
    "lsc": _Site("LCOGT node at Cerro Tololo Inter-American Obs.", -30.1673305, -70.8046889, 2198.0),
    "elp": _Site("LCOGT node at McDonald Observatory", 30.6801, -104.015173, 2027.0),
    "ogg": _Site("LCOGT node at Haleakala Observatory", 20.7069444, -156.2577778, 3055.0),
    "tfn": _Site("LCOGT node at Teide Observatory", 28.3003, -16.5117, 2390.0),
    "sqa": _Site("LCOGT node at Sedgwick Reserve", 34.6914, -120.0422, 328.0),
    "tlv": _Site("LCOGT node at Wise Observatory", 30.5958, 34.7633, 875.0),
}

# name, RA (deg), Dec (deg)
_SCIENCE_TARGETS = (
    ("M84", 186.265597, 12.886983),
    ("NGC 2997", 146.411667, -31.191111),
    ("GJ 3470", 119.774167, 15.391389),
    ("WASP-19", 148.416958, -45.659194),
    ("M42", 83.822083, -5.391111),
    ("NGC 253", 11.887917, -25.288333),
    ("Omega Cen", 201.696833, -47.479472),
    ("M13", 250.421833, 36.459861),
    ("47 Tuc", 6.022333, -72.081444),
    ("M31", 10.684708, 41.26875),
    ("M51", 202.469583, 47.195167),
    ("Kepler-10", 285.679167, 50.241389),
)
_STANDARDS = (
    ("S82_01", 10.559992, 0.356800),
    ("PG0918+029", 140.366667, 2.767500),
    ("SA 98", 103.000000, -0.316667),
    ("SA 104", 190.750000, -0.500000),
    ("SA 110", 280.750000, 0.133333),
    ("SA 113", 325.250000, 0.666667),
)

# letter -> (OBSTYPE, MOLTYPE, OBJECT or None for a pointed target, EXPTIME choices)
_LETTERS: dict[str, tuple[str, str, str | None, tuple[float, ...]]] = {
    "e": ("EXPOSE", "EXPOSE", None, (15.0, 30.0, 60.0, 120.0, 300.0)),
    "s": ("STANDARD", "STANDARD", None, (30.0, 60.0)),
    "b": ("BIAS", "BIAS", "N/A", (0.0,)),
    "d": ("DARK", "DARK", "N/A", (300.0, 900.0)),
    "f": ("SKYFLAT", "SKY_FLAT", "Flat", (2.212, 5.1, 9.307)),
    "w": ("LAMPFLAT", "LAMP_FLAT", "Lamp flat", (20.0,)),
    "a": ("ARC", "ARC", "Arc", (60.0,)),
    "g": ("GUIDE", "GUIDE", None, (10.0,)),
    "t": ("TRAILED", "TRAILED", None, (3.285,)),
    "x": ("EXPERIMENTAL", "auto_focus", "auto_focus", (10.0,)),
}
_CALIBRATION_LETTERS = frozenset("bdfwa")
_FILTERS = ("rp", "ip", "gp", "V", "B", "zs")

# instrument prefix -> (INSTYPE, detector, pixel scale arcsec, nominal NAXIS1, NAXIS2, CCDSUM, gain, noise)
_INSTRUMENTS = {
    "kb": ("1m0-SciCam-SBIG", "ccd{i}-1", 0.467, 2048, 2048, "2 2", 1.4, 13.5),
    "fl": ("1m0-SciCam-Sinistro", "DB{n}", 0.389, 4096, 4096, "1 1", 2.0, 14.8),
    "fa": ("1m0-SciCam-Sinistro", "fa{n}", 0.389, 4096, 4096, "1 1", 1.0, 7.5),
    "fs": ("2m0-SciCam-Spectral", "fs{n}", 0.304, 2048, 2048, "2 2", 7.7, 10.0),
    "en": ("2m0-FLOYDS-SciCam", "en{n}", 0.337, 2048, 512, "1 1", 2.0, 3.5),
    "ef": ("1m0-AutoGuider", "ef{n}", 0.57, 1024, 1024, "1 1", 1.5, 12.0),
}
_DEFAULT_INSTRUMENT = _INSTRUMENTS["fl"]

_MJD0 = dt.datetime(1858, 11, 17, tzinfo=dt.UTC)


def _crc(text: str) -> int:
    # Stable across processes (unlike hash()), so derived ids are reproducible.
    return zlib.crc32(text.encode())


def _sexagesimal(deg: float, *, hours: bool) -> str:
    value = deg / 15.0 if hours else deg
    sign = "-" if value < 0 else "+"
    value = abs(value)
    whole = int(value)
    minutes = int((value - whole) * 60)
    seconds = ((value - whole) * 60 - minutes) * 60
    if hours:
        return f"{whole:02d}:{minutes:02d}:{seconds:06.3f}"
    return f"{sign}{whole:02d}:{minutes:02d}:{seconds:05.2f}"


def _geocentric(site: _Site) -> tuple[float, float, float]:
    # WGS84 geodetic -> cartesian (OBSGEO-X/Y/Z), as the telescope control system writes them.
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    lat, lon = math.radians(site.lat), math.radians(site.lon)
    n = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    x = (n + site.height) * math.cos(lat) * math.cos(lon)
    y = (n + site.height) * math.cos(lat) * math.sin(lon)
    z = (n * (1 - e2) + site.height) * math.sin(lat)
    return round(x, 3), round(y, 3), round(z, 3)


def _lst_deg(when: dt.datetime, lon: float) -> float:
    days = (when - dt.datetime(2000, 1, 1, 12, tzinfo=dt.UTC)).total_seconds() / 86400.0
    return (280.46061837 + 360.98564736629 * days + lon) % 360.0


def _alt_az(ra: float, dec: float, lst: float, lat: float) -> tuple[float, float]:
    ha, d, p = math.radians(lst - ra), math.radians(dec), math.radians(lat)
    sin_alt = math.sin(d) * math.sin(p) + math.cos(d) * math.cos(p) * math.cos(ha)
    alt = math.asin(max(-1.0, min(1.0, sin_alt)))
    az = math.atan2(-math.sin(ha) * math.cos(d), math.sin(d) * math.cos(p) - math.cos(d) * math.sin(p) * math.cos(ha))
    return math.degrees(alt), math.degrees(az) % 360.0


def _iso(when: dt.datetime, ms: bool = True) -> str:
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{when.microsecond // 1000:03d}" if ms else text


def _set(header: fits.Header, keyword: str, value: Any) -> None:
    """Set a card's value, keeping the template's comment cut to 80 columns as real LCO headers do."""
    comment = header.comments[keyword] if keyword in header else ""
    room = 80 - len(fits.Card(keyword, value).image.rstrip()) - 3
    header[keyword] = (value, comment[: max(0, room)])


@functools.cache
def _template() -> fits.Header:
    return fits.Header.fromtextfile(str(importlib.resources.files(__package__) / _TEMPLATE))


def _proposal(name: FrameName, spectrum: bool) -> str:
    if name.letter in _CALIBRATION_LETTERS:
        return "calibrate"
    if name.letter == "s":
        return "standard"
    if name.letter == "x":
        return "LCOEngineering"
    semester = "A" if int(name.day[4:6]) <= 6 else "B"
    return f"LCO{name.day[:4]}{semester}-{_crc(name.instrument + name.day) % 20 + (30 if spectrum else 1):03d}"


def lco_header(basename: str, *, drop: Iterable[str] = (), **overrides: Any) -> fits.Header:
    """A realistic LCO science header consistent with ``basename``.

    The cards, their order and comments come from the template file (a processed LCO frame's header);
    here only the values that depend on the frame are computed. The basename's parts give SITEID,
    TELID/TELESCOP, INSTRUME, DAY-OBS (and a DATE-OBS that night), FRAMENUM, OBSTYPE (from the letter;
    ``e`` with an ``en`` spectrograph is SPECTRUM) and, for levels above 00, RLEVEL and the pipeline's L1
    cards (raw frames have none). Names that do not follow the LCO convention (e.g.
    ``bias_kb70_20151221_bin2x2``) get the default frame's values. Structural cards (SIMPLE, BITPIX,
    NAXIS...) are left to the writer. Keywords with a dash go through a dict:
    ``lco_header(name, **{"DAY-OBS": "20151220"})``; a ``(value, comment)`` tuple sets both;
    ``drop=("DAY-OBS",)`` removes cards (after overrides).
    """
    name = parse_frame_name(basename) or FrameName()
    site = _SITES.get(name.site, _Site(f"LCOGT node {name.site}", -32.38, 20.81, 1760.0))
    instype, detector, pixscale, nx, ny, ccdsum, gain, rdnoise = _INSTRUMENTS.get(
        name.instrument[:2], _DEFAULT_INSTRUMENT
    )
    spectrum = name.instrument.startswith("en") and name.letter == "e"
    obstype, moltype, fixed_object, exptimes = _LETTERS.get(name.letter, _LETTERS["e"])
    if spectrum:
        obstype, moltype = "SPECTRUM", "SPECTRUM"
    processed = name.rlevel > 0
    h = _crc(f"{name.site}{name.tel}{name.telnum}-{name.instrument}-{name.day}-{name.seq}")  # one exposure

    night = dt.datetime.strptime(name.day, "%Y%m%d").replace(tzinfo=dt.UTC)
    # Local dusk is roughly 18h UTC at longitude 0; shift by longitude so the frame is taken at night.
    start = night + dt.timedelta(hours=18.5 - site.lon / 15.0, seconds=(name.seq % 500) * 61 + (h % 997) / 1000.0)
    exptime = exptimes[h % len(exptimes)]
    stop = start + dt.timedelta(seconds=exptime + 1.5)
    lst = _lst_deg(start, site.lon)
    if fixed_object is not None:
        # Calibrations point near the zenith (flats) or anywhere (bias/dark); real headers say so too.
        target, ra, dec = fixed_object, lst % 360.0, site.lat
    else:
        candidates = _STANDARDS if name.letter == "s" else _SCIENCE_TARGETS
        # The best-placed target at that moment keeps altitude and airmass plausible for every site/time.
        target, ra, dec = max(candidates, key=lambda t: _alt_az(t[1], t[2], lst, site.lat)[0])
    alt, az = _alt_az(ra, dec, lst, site.lat)
    filt = _FILTERS[h % len(_FILTERS)] if name.letter not in "bd" else "air"
    proposal = _proposal(name, spectrum)
    science = proposal not in ("calibrate", "standard", "LCOEngineering")
    ox, oy, oz = _geocentric(site)
    ra_s, dec_s = _sexagesimal(ra, hours=True), _sexagesimal(dec, hours=False)
    dateobs = _iso(start)
    detector_id = detector.format(i=name.instrument, n=name.instrument[2:])
    values: dict[str, Any] = {
        "DATADICV": "LCOGT-DIC-PIPE.FITS-0.7.4" if processed else "LCOGT-DIC.FITS-0.10.0",
        "HDRVER": "LCOGT-HDR-1.4.0" if processed else "LCOGT-HDR-1.3.0",
        "SITEID": name.site,
        "SITE": site.name,
        "ENCID": "clma" if name.tel == "2m0" else ("aqwa" if name.tel == "0m4" else "doma"),
        "ENCLOSUR": f"Dome-{name.telnum % 10 + 1:02d}",
        "TELID": f"{name.tel}a",
        "TELESCOP": f"{name.tel}-{name.telnum:02d}",
        "LATITUDE": site.lat,
        "LONGITUD": site.lon,
        "HEIGHT": site.height,
        "OBSGEO-X": ox,
        "OBSGEO-Y": oy,
        "OBSGEO-Z": oz,
        "OBSTYPE": obstype,
        "FRAMENUM": name.seq,
        "MOLTYPE": moltype,
        "MOLNUM": name.seq % 50 + 1,
        "ORIGNAME": f"{name.raw_basename}.fits",
        "DATE": (stop + dt.timedelta(minutes=48 if processed else 0)).strftime("%Y-%m-%dT%H:%M:%S"),
        "DATE-OBS": dateobs,
        "DAY-OBS": name.day,
        "UTSTART": dateobs[11:],
        "UTSTOP": _iso(stop)[11:],
        "MJD-OBS": round((start - _MJD0).total_seconds() / 86400.0, 7),
        "EXPTIME": exptime,
        "FILTER2": filt,
        "FILTERI2": f"SDSS-{filt.upper()}-18{h % 10}",
        "FILTER": filt,
        "FWID": f"fws{name.tel}-{name.telnum % 10:02d}",
        "INSTRUME": name.instrument,
        "INSTYPE": instype,
        "DETECTOR": detector_id,
        "DETECTID": detector_id,
        "GAIN": gain,
        "RDNOISE": rdnoise,
        "DETSIZE": f"[1:{nx},1:{ny}]",
        "CCDSUM": ccdsum,
        "DATASEC": f"[1:{nx},1:{ny}]",
        "TRIMSEC": f"[1:{nx},1:{ny}]",
        "PIXSCALE": pixscale,
        "USERID": "pipeline" if science else f"{name.site.upper()}Ops",
        "PROPID": proposal,
        "GROUPID": f"{target.replace(' ', '')}_{name.day}" if science else "LCOGT",
        "TRACKNUM": f"{100_000 + h % 50_000:010d}" if science else "UNSPECIFIED",
        "REQNUM": f"{400_000 + h % 100_000:010d}" if science else "UNSPECIFIED",
        "MOLUID": str(180_000_000 + h % 9_000_000),
        "BLKUID": str(70_000_000 + h % 9_000_000),
        "BLKSDATE": _iso(start - dt.timedelta(seconds=22), ms=False),
        "BLKEDATE": _iso(stop + dt.timedelta(seconds=300), ms=False),
        "PCRECIPE": "QUICK_LOOK" if processed else "N/A",
        "PPRECIPE": "timecorrect" if processed else "N/A",
        "RA": ra_s,
        "DEC": dec_s,
        "LST": _sexagesimal(lst, hours=True)[:11],
        "CAT-RA": ra_s,
        "CAT-DEC": dec_s,
        "OFST-RA": ra_s,
        "OFST-DEC": dec_s,
        "OBJECT": target,
        "AZIMUTH": round(az, 7),
        "ALTITUDE": round(alt, 7),
        "AIRMASS": round(1.0 / math.sin(math.radians(alt)) if alt > 5 else 99.0, 7),
        "ENCAZ": round((az + 1.1) % 360.0, 7),
        "CRPIX1": nx / 2.0,
        "CRPIX2": ny / 2.0,
        "CRVAL1": round(ra, 7),
        "CRVAL2": round(dec, 7),
        "CD1_1": round(-pixscale / 3600.0, 10),
        "CD2_2": round(pixscale / 3600.0, 10),
        "AGSTATE": "GUIDING" if name.letter in "es" else "N/A",
        "AGCAM": f"ef{name.telnum % 20:02d}",
    }
    if processed:
        binning = f"bin{ccdsum.replace(' ', 'x')}"
        values |= {
            "RLEVEL": name.rlevel,
            "L1IDBIAS": f"bias_{name.instrument}_{name.day}_{binning}",
            "L1IDDARK": f"dark_{name.instrument}_{name.day}_{binning}",
            "L1IDFLAT": f"flat_{name.instrument}_{name.day}_SKYFLAT_{binning}_{filt}",
            "L1IDMASK": f"bpm-{name.instrument}_{binning}",
            "L1PUBPRV": "private" if science else "public",
            "L1PUBDAT": _iso(start + dt.timedelta(days=365) if science else start, ms=False),
        }

    header = _template().copy()
    for keyword, value in values.items():
        _set(header, keyword, value)
    if not processed:  # the pipeline's cards (RLEVEL onwards) come with processing
        del header[header.index("RLEVEL") :]
    if "_cat" in basename:
        # Real catalogue primaries carry the frame's header without the image WCS, plus SExtractor cards.
        for keyword in ("CTYPE", "CRPIX", "CRVAL", "CUNIT"):
            for axis in "12":
                header.remove(keyword + axis)
        for keyword in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
            header.remove(keyword)
        header["SEXIMASX"] = (nx, "IMAGE WIDTH (PIXELS)")
        header["SEXIMASY"] = (ny, "IMAGE HEIGHT (PIXELS)")
        header["SEXSFWHM"] = (2.116, "SEEING FWHM (ARCSEC)")
        header["CATVER"] = ("LCOGT-FITS-SRCCAT-1.4.3", "Source Catalog Version")

    for keyword, value in overrides.items():
        header[keyword.upper()] = value
    for keyword in drop:
        header.remove(keyword.upper(), ignore_missing=True, remove_all=True)
    return header


# --------------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------------

# Cards the writers own: the structure of each HDU, compression bookkeeping and stale checksums.
_STRUCTURAL = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|XTENSION|PCOUNT|GCOUNT|TFIELDS|THEAP|EXTNAME|CHECKSUM|DATASUM|"
    r"T(TYPE|FORM|UNIT|DISP|NULL|SCAL|ZERO|DIM)\d+|"
    r"Z(IMAGE|TENSION|BITPIX|NAXIS\d*|TILE\d+|CMPTYPE|NAME\d+|VAL\d+|PCOUNT|GCOUNT|QUANTIZ|DITHER0|SIMPLE|"
    r"EXTEND|HECKSUM|DATASUM|BLANK|SCALE|ZERO))$"
)


class _Counter:
    """A write-only wrapper that counts bytes, so every writer can report what it wrote."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.raw.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


@contextmanager
def _open_target(target: Target) -> Iterator[_Counter]:
    if isinstance(target, str | os.PathLike):
        with open(target, "wb") as fh:
            yield _Counter(fh)
    else:
        yield _Counter(target)  # caller's stream: not ours to close


def _science_cards(header: fits.Header) -> list[fits.Card]:
    return [card for card in header.cards if not _STRUCTURAL.match(card.keyword)]


def _pad(out: _Counter, written: int, fill: bytes = b"\0") -> None:
    pad = (-written) % BLOCK
    if pad:
        out.write(fill * pad)


def _image_shape(pixels: int, max_width: int = 8192) -> tuple[int, int]:
    """(width, height) of an image of about ``pixels``: width a power of two near the square root."""
    if pixels <= 0:
        return 0, 0
    width = 1 << max(4, min(int(math.log2(max_width)), round(math.log2(math.sqrt(pixels)))))
    return width, max(1, -(-pixels // width))


def _noise_block(seed: int, nbytes: int = _CHUNK) -> bytes:
    # A sky-like int16 background; repeated to fill large data units, so generation cost stays constant.
    rng = np.random.default_rng(seed)
    return (1000 + rng.integers(-40, 41, nbytes // 2, dtype=np.int16)).astype(">i2").tobytes()


def _stream_repeated(out: _Counter, pattern: bytes, total: int) -> None:
    written = 0
    while written < total:
        piece = pattern[: min(len(pattern), total - written)]
        out.write(piece)
        written += len(piece)


def _fill_default_wcs(cards_header: fits.Header, width: int, height: int, default_header: bool) -> None:
    # Only our own default header is re-centred: a caller's header is written as given.
    if default_header and "CRPIX1" in cards_header:
        cards_header["CRPIX1"] = width / 2.0
        cards_header["CRPIX2"] = height / 2.0


def _image_header(science: fits.Header, width: int, height: int) -> fits.Header:
    hdr = fits.Header(
        [
            ("SIMPLE", True, "file does conform to FITS standard"),
            ("BITPIX", 16, "number of bits per data pixel"),
            ("NAXIS", 2 if width else 0, "number of data axes"),
        ]
    )
    if width:
        hdr["NAXIS1"] = (width, "length of data axis 1")
        hdr["NAXIS2"] = (height, "length of data axis 2")
    hdr["EXTEND"] = (True, "FITS dataset may contain extensions")
    hdr.extend(_science_cards(science))
    return hdr


def _plan_image(header: fits.Header, data_bytes: int, default_header: bool) -> tuple[bytes, int]:
    """Header bytes and data-unit length (unpadded) of a ``.fits`` image holding about data_bytes."""
    width, height = _image_shape(max(0, data_bytes) // 2)
    science = header.copy()
    _fill_default_wcs(science, width, height, default_header)
    hdr = _image_header(science, width, height)
    return hdr.tostring().encode("ascii"), width * height * 2


def _write_image(out: _Counter, header: fits.Header, data_bytes: int, seed: int, default_header: bool) -> None:
    head, nbytes = _plan_image(header, data_bytes, default_header)
    out.write(head)
    if nbytes:
        _stream_repeated(out, _noise_block(seed), nbytes)
        _pad(out, nbytes)


def _minimal_primary() -> bytes:
    # What fpack writes before the compressed image: an empty primary HDU.
    hdr = fits.Header(
        [
            ("SIMPLE", True, "file does conform to FITS standard"),
            ("BITPIX", 16, "number of bits per data pixel"),
            ("NAXIS", 0, "number of data axes"),
            ("EXTEND", True, "FITS dataset may contain extensions"),
        ]
    )
    return hdr.tostring().encode("ascii")


def _compressed_tiles(science: fits.Header, width: int, rows: int, seed: int) -> tuple[fits.Header, list[bytes]]:
    """Compress ``rows`` distinct one-row tiles with astropy: the template the big file repeats."""
    rng = np.random.default_rng(seed)
    data = (1000 + rng.integers(-40, 41, (rows, width), dtype=np.int16)).astype(">i2")
    hdu = fits.CompImageHDU(data=data, header=science, compression_type="RICE_1", tile_shape=(1, width))
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    buf.seek(0)
    with fits.open(buf, disable_image_compression=True) as hdul:
        table = hdul[1]
        tiles = [np.asarray(cell, dtype=np.uint8).tobytes() for cell in table.data["COMPRESSED_DATA"]]
        return table.header.copy(), tiles


@functools.lru_cache(maxsize=64)
def _compressed_row_cost(width: int, rows: int) -> float:
    """Average bytes per compressed row (heap + 1PB descriptor) of the seed-0 template."""
    _, tiles = _compressed_tiles(fits.Header(), width, rows, seed=0)
    return sum(len(t) for t in tiles) / rows + 8


def _write_compressed_image(
    out: _Counter, header: fits.Header, data_bytes: int, seed: int, default_header: bool
) -> None:
    """fpack layout with bounded memory: a few compressed tiles, repeated to about data_bytes of heap."""
    # Rice on this noise gives about one byte a pixel, so data_bytes is also the pixel budget.
    width, _ = _image_shape(max(1, data_bytes), max_width=4096)
    template_rows = 16
    # Sized from a seed-0 template, so the seed changes the data (and md5) but never the header.
    nrows = max(1, round(data_bytes / _compressed_row_cost(width, template_rows)))

    science = header.copy()
    _fill_default_wcs(science, width, nrows, default_header)
    table_header, tiles = _compressed_tiles(fits.Header(_science_cards(science)), width, template_rows, seed)
    lengths = np.array([len(t) for t in tiles], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    cycle = b"".join(tiles)
    heap = int(nrows // template_rows * len(cycle) + lengths[: nrows % template_rows].sum())
    wide = heap >= 2**31  # 32-bit descriptors cannot address a heap this large
    desc_dtype = ">i8" if wide else ">i4"
    row_bytes = 16 if wide else 8

    table_header["NAXIS1"] = row_bytes
    table_header["NAXIS2"] = nrows
    table_header["PCOUNT"] = heap
    table_header["TFORM1"] = f"1{'Q' if wide else 'P'}B({int(lengths.max())})"
    table_header["ZNAXIS2"] = nrows
    out.write(_minimal_primary())
    out.write(table_header.tostring().encode("ascii"))

    # Descriptor table, in chunks: row i holds tile i % T at offset (i // T) * len(cycle) + starts[i % T].
    step = 1 << 16
    for first in range(0, nrows, step):
        idx = np.arange(first, min(nrows, first + step), dtype=np.int64)
        which = idx % template_rows
        desc = np.empty((len(idx), 2), dtype=desc_dtype)
        desc[:, 0] = lengths[which]
        desc[:, 1] = idx // template_rows * len(cycle) + starts[which]
        out.write(desc.tobytes())
    repeats = max(1, _CHUNK // len(cycle))
    _stream_repeated(out, cycle * repeats, heap)
    _pad(out, nrows * row_bytes + heap)


_CATALOGUE_DTYPE = np.dtype(
    [
        ("NUMBER", ">i4"),
        ("X_IMAGE", ">f4"),
        ("Y_IMAGE", ">f4"),
        ("ALPHA_J2000", ">f8"),
        ("DELTA_J2000", ">f8"),
        ("FLUX_AUTO", ">f4"),
        ("FLUXERR_AUTO", ">f4"),
        ("FWHM_IMAGE", ">f4"),
        ("FLAGS", ">i2"),
    ]
)
_CATALOGUE_COLUMNS = (
    ("NUMBER", "J", "", "Running object number"),
    ("X_IMAGE", "E", "pixel", "Object position along x"),
    ("Y_IMAGE", "E", "pixel", "Object position along y"),
    ("ALPHA_J2000", "D", "deg", "Right ascension of barycenter (J2000)"),
    ("DELTA_J2000", "D", "deg", "Declination of barycenter (J2000)"),
    ("FLUX_AUTO", "E", "count", "Flux within a Kron-like elliptical aperture"),
    ("FLUXERR_AUTO", "E", "count", "RMS error for AUTO flux"),
    ("FWHM_IMAGE", "E", "pixel", "FWHM assuming a gaussian core"),
    ("FLAGS", "I", "", "Extraction flags"),
)


def _write_catalogue(out: _Counter, header: fits.Header, data_bytes: int, seed: int) -> None:
    nrows = max(1, data_bytes // _CATALOGUE_DTYPE.itemsize)
    primary = fits.Header(
        [
            ("SIMPLE", True, "file does conform to FITS standard"),
            ("BITPIX", 8, "number of bits per data pixel"),
            ("NAXIS", 0, "number of data axes"),
            ("EXTEND", True, "This file may contain FITS extensions"),
        ]
    )
    primary.extend(_science_cards(header))
    primary["SEXNFIN"] = (nrows, "NB OF FINAL EXTRACTED OBJECTS")
    out.write(primary.tostring().encode("ascii"))

    table = fits.Header(
        [
            ("XTENSION", "BINTABLE", "binary table extension"),
            ("BITPIX", 8, "array data type"),
            ("NAXIS", 2, "number of array dimensions"),
            ("NAXIS1", _CATALOGUE_DTYPE.itemsize, "length of dimension 1"),
            ("NAXIS2", nrows, "length of dimension 2"),
            ("PCOUNT", 0, "number of group parameters"),
            ("GCOUNT", 1, "number of groups"),
            ("TFIELDS", len(_CATALOGUE_COLUMNS), "number of table fields"),
        ]
    )
    for i, (name, form, unit, comment) in enumerate(_CATALOGUE_COLUMNS, start=1):
        table[f"TTYPE{i}"] = (name, comment)
        table[f"TFORM{i}"] = form
        if unit:
            table[f"TUNIT{i}"] = unit
    table["EXTNAME"] = ("LDAC_OBJECTS", "Source catalogue")
    out.write(table.tostring().encode("ascii"))

    rng = np.random.default_rng(seed)
    ra0 = float(header.get("CRVAL1", 0.0) or 0.0) if "CRVAL1" in header else 0.0
    dec0 = float(header.get("CRVAL2", 0.0) or 0.0) if "CRVAL2" in header else 0.0
    step = max(1, _CHUNK // _CATALOGUE_DTYPE.itemsize)
    for first in range(0, nrows, step):
        n = min(step, nrows - first)
        rows = np.zeros(n, dtype=_CATALOGUE_DTYPE)
        rows["NUMBER"] = np.arange(first + 1, first + n + 1)
        rows["X_IMAGE"] = rng.uniform(1, 2048, n)
        rows["Y_IMAGE"] = rng.uniform(1, 2048, n)
        rows["ALPHA_J2000"] = ra0 + rng.uniform(-0.13, 0.13, n)
        rows["DELTA_J2000"] = dec0 + rng.uniform(-0.13, 0.13, n)
        rows["FLUX_AUTO"] = rng.lognormal(8, 1.5, n)
        rows["FLUXERR_AUTO"] = rows["FLUX_AUTO"] ** 0.5
        rows["FWHM_IMAGE"] = rng.normal(4.5, 0.4, n)
        out.write(rows.tobytes())
    _pad(out, nrows * _CATALOGUE_DTYPE.itemsize)


def write_frame(
    target: Target,
    *,
    basename: str,
    extension: str = ".fits",
    data_bytes: int = 64 * 1024,
    header: fits.Header | None = None,
    seed: int = 0,
) -> int:
    """Write a synthetic frame to a path or binary stream; returns the bytes written.

    ``extension`` is ``.fits``, ``.fits.fz``, ``_cat.fits`` or ``_cat.fits.fz`` (a basename ending in
    ``_cat`` also makes a catalogue). ``data_bytes`` is the approximate size of the data unit(s), so the
    file is about header + data_bytes, padded to 2880: uncompressed pixels for ``.fits``, the compressed
    heap for ``.fits.fz``, table rows for catalogues. ``header`` defaults to ``lco_header(basename)``
    (whose CRPIX is then centred on the image); its structural cards are replaced. ``seed`` changes the
    data bytes (hence the md5) without changing the header. Memory stays bounded (about 2 MB) for any size.
    """
    if extension.startswith("_cat"):
        basename, extension = basename + "_cat", extension[len("_cat") :]
    if extension not in (".fits", ".fits.fz"):
        raise ValueError(f"unsupported extension {extension!r}: use .fits, .fits.fz or _cat.fits[.fz]")
    default_header = header is None
    hdr = lco_header(basename) if header is None else header
    with _open_target(target) as out:
        if basename.endswith("_cat"):
            _write_catalogue(out, hdr, data_bytes, seed)  # fpack leaves tables as they are
        elif extension == ".fits":
            _write_image(out, hdr, data_bytes, seed, default_header)
        else:
            _write_compressed_image(out, hdr, data_bytes, seed, default_header)
        return out.count


def make_frame_bytes(
    basename: str = DEFAULT_BASENAME,
    extension: str = ".fits",
    *,
    data_bytes: int = 16 * 1024,
    header: fits.Header | None = None,
    seed: int = 0,
) -> bytes:
    """A small frame in memory (see :func:`write_frame`)."""
    buf = io.BytesIO()
    write_frame(buf, basename=basename, extension=extension, data_bytes=data_bytes, header=header, seed=seed)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------------
# Tarballs
# --------------------------------------------------------------------------------------------------------


class _TarStream:
    """Writes a gzip-compressed tar member by member, streaming each member's bytes (bounded memory).

    tarfile wants a readable file object per member; writing header blocks ourselves lets members come
    from generators of chunks. gzip mtime and tar member metadata are fixed, so output is reproducible.
    """

    def __init__(self, out: _Counter) -> None:
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9)  # type: ignore[arg-type]
        self._offset = 0

    def _write(self, data: bytes) -> None:
        self._gz.write(data)
        self._offset += len(data)

    def add(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, _FIXED_MTIME, 0o644
        info.uname = info.gname = "lco"
        self._write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
        written = 0
        for chunk in chunks:
            self._write(chunk)
            written += len(chunk)
        if written != size:
            raise RuntimeError(f"tar member {name}: wrote {written} bytes, declared {size}")
        self._write(b"\0" * ((-size) % _TAR_BLOCK))

    def close(self) -> None:
        self._write(b"\0" * (2 * _TAR_BLOCK))  # end-of-archive marker
        self._write(b"\0" * ((-self._offset) % _TAR_RECORD))
        self._gz.close()


def write_tarball(
    target: Target,
    *,
    basename: str = DEFAULT_SPECTRUM_BASENAME,
    members: list[tuple[str, bytes]] | None = None,
    header: fits.Header | None = None,
    data_bytes: int = 16 * 1024,
    seed: int = 0,
) -> int:
    """A ``.tar.gz`` spectra bundle; returns the bytes written.

    The first member is ``<basename>.fits`` (e.g. ``ogg2m001-en06-20151219-0012-e00.fits``, which
    ocs_archive's tar readers look for) with the full LCO header; ``members`` are appended after it
    (default: a small summary PDF stand-in; ``[]`` for none).
    """
    meta = make_frame_bytes(basename, ".fits", data_bytes=data_bytes, header=header, seed=seed)
    if members is None:
        members = [(f"{basename}-summary.pdf", b"%PDF-1.4\n% synthetic spectrum summary\n%%EOF\n")]
    with _open_target(target) as out:
        tar = _TarStream(out)
        tar.add(f"{basename}.fits", len(meta), [meta])
        for name, payload in members:
            tar.add(name, len(payload), [payload])
        tar.close()
        return out.count


# --------------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------------


def thumbnail_metadata(frame_basename: str = DEFAULT_BASENAME, size: str = "small") -> dict[str, str]:
    """S3 user metadata (x-amz-meta-*) a thumbnail of a synthetic frame carries: ocs_archive's required
    thumbnail metadata, plus OBSTYPE, since the archive validates a thumbnail's body as a frame's
    (configuration_type "" is refused)."""
    return {
        "frame_basename": frame_basename,
        "size": size,
        "date-obs": "2015-12-19T18:22:15.000",
        "day-obs": "20151219",
        "instrume": "kb70",
        "siteid": "cpt",
        "telid": "1m0a",
        "obstype": "EXPOSE",
    }


def random_bytes(n: int, seed: int = 0) -> bytes:
    """``n`` seeded random bytes: not FITS, not gzip."""
    data = random.Random(seed).randbytes(n)
    # A random prefix could in theory look like a FITS or gzip magic; make sure it does not.
    return (b"\x00" + data[1:]) if data[:1] in (b"S", b"\x1f") else data


def header_without_end(basename: str = DEFAULT_BASENAME) -> bytes:
    """Full header blocks of a real-looking frame but no END card (astropy: 'Header missing END card')."""
    hdr = _image_header(lco_header(basename), 64, 64)
    text = hdr.tostring(endcard=False, padding=False)
    text += " " * ((-len(text)) % BLOCK)
    return text.encode("ascii")


def truncated_data_frame(
    basename: str = DEFAULT_BASENAME, data_bytes: int = 64 * 1024, keep_bytes: int | None = None
) -> bytes:
    """A ``.fits`` frame whose header claims a data unit of about data_bytes, of which only keep_bytes
    (default: half) are present."""
    head, nbytes = _plan_image(lco_header(basename), data_bytes, default_header=True)
    keep = nbytes // 2 if keep_bytes is None else min(keep_bytes, nbytes - 1)
    return head + _noise_block(0, keep + (keep % 2))[:keep]


def huge_header_frame(cards: int = 10000, basename: str = DEFAULT_BASENAME, data_bytes: int = 2880) -> bytes:
    """A valid ``.fits`` frame whose header carries ``cards`` extra distinct keywords (80 bytes each)."""
    head, nbytes = _plan_image(lco_header(basename), data_bytes, default_header=True)
    text = head.decode("ascii").rstrip(" ")
    assert text.endswith("END")
    # Card images written directly: astropy's Header.extend is quadratic in the number of cards.
    extra = "".join(f"{f'XK{i:06d}':<8}= {i:>20} / padding card".ljust(80) for i in range(cards))
    text = text[: -len("END")] + extra + "END"
    text += " " * ((-len(text)) % BLOCK)
    return text.encode("ascii") + _noise_block(0, nbytes + nbytes % 2)[:nbytes] + b"\0" * ((-nbytes) % BLOCK)


def gzip_bomb(target: Target, decompressed_bytes: int, *, basename: str = DEFAULT_SPECTRUM_BASENAME) -> int:
    """A ``.tar.gz`` that inflates to at least ``decompressed_bytes`` but compresses ~1000:1; returns the
    compressed size.

    Its one member, ``<basename>.fits``, is a real LCO header followed by a zero-filled data unit, so a
    reader that extracts the "meta FITS" whole (as ocs_archive does) inflates all of it. Built streaming:
    memory is bounded whatever the size; time is about 1 s per GB.
    """
    hdr = lco_header(basename)
    head, nbytes = _plan_image(hdr, max(0, decompressed_bytes), default_header=True)
    padded = nbytes + (-nbytes) % BLOCK
    zeros = bytes(_CHUNK)

    def chunks() -> Iterator[bytes]:
        yield head
        left = padded
        while left:
            piece = zeros[: min(left, _CHUNK)]
            left -= len(piece)
            yield piece

    with _open_target(target) as out:
        tar = _TarStream(out)
        tar.add(f"{basename}.fits", len(head) + padded, chunks())
        tar.close()
        return out.count
