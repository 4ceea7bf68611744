"""Read only the FITS header blocks of an object, with ranged reads that grow geometrically.

Hand-written on purpose: astropy and fitsio read from a file object and seek past data units, which over
S3 either downloads the whole object or needs one request per block. Here a data unit's size is computed
from its header (NAXISn, BITPIX, PCOUNT, GCOUNT) and skipped without a request; the bytes handed to
ocs_archive are the walked headers only, which astropy reads as a (truncated) FITS file.

`.tar.gz` spectra bundles are stream-decompressed from the start only until the header of the FITS member
ocs_archive would pick is complete.
"""

from __future__ import annotations

import gzip
import io
import math
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from lambda_ingest.errors import InvalidFileError

BLOCK = 2880
CARD = 80
END_CARD = b"END" + b" " * 77
# Earlier HDUs' data units are replaced by zeros (never fetched); above this they would cost too much memory.
MAX_ZERO_FILL = 32 * 1024 * 1024

INITIAL_READ = 36 * BLOCK

RangeReader = Callable[[int, int], bytes]
"""read(offset, length) -> bytes: at most `length` bytes starting at `offset`."""


@dataclass(frozen=True)
class HeaderLimits:
    """Hard limits of a header walk (a hostile file must not exhaust memory or time); settings override them."""

    # The first ranged read (a typical LCO header, ~1,000 cards, in one request): not a setting, tests
    # override INITIAL_READ in code (read at construction, so a patched value takes effect).
    initial_read: int = field(default_factory=lambda: INITIAL_READ)
    max_bytes: int = 2 * 1024 * 1024
    max_cards: int = 5000
    max_hdus: int = 16
    tar_max_scan_bytes: int = 256 * 1024 * 1024


@dataclass
class HeaderScan:
    """What the walk found: `fits_bytes` is a FITS stream ocs_archive can open."""

    fits_bytes: bytes
    bytes_read: int
    validated_hdu: int | None
    missing: tuple[str, ...] = ()
    """When no HDU validated: the required keywords missing from the closest HDU."""


class _ForwardBlockReader:
    """Serves blocks from a buffer filled by ranged reads that double in size each time."""

    def __init__(self, read: RangeReader, size: int, initial_read: int) -> None:
        self._read = read
        self._size = size
        self._next_read = max(BLOCK, math.ceil(initial_read / BLOCK) * BLOCK)
        self._buf = b""
        self._buf_start = 0
        self.bytes_read = 0

    def block(self, offset: int) -> bytes:
        end = offset + BLOCK
        if not (self._buf_start <= offset and end <= self._buf_start + len(self._buf)):
            self._fill(offset)
        start = offset - self._buf_start
        return self._buf[start : start + BLOCK]

    def _fill(self, offset: int) -> None:
        buf_end = self._buf_start + len(self._buf)
        if self._buf_start <= offset <= buf_end:
            # Contiguous with what we hold: keep the tail we still need, fetch after it.
            keep = self._buf[offset - self._buf_start :]
            fetch_from = buf_end
        else:
            keep, fetch_from = b"", offset
        length = min(self._next_read, self._size - fetch_from)
        data = self._read(fetch_from, length) if length > 0 else b""
        self.bytes_read += len(data)
        self._next_read *= 2
        self._buf, self._buf_start = keep + data, offset


def _card_int(cards: dict[bytes, bytes], name: str, default: int, hdu: int) -> int:
    raw = cards.get(name.encode("ascii"))
    if raw is None:
        return default
    text = raw[10:].split(b"/")[0].strip() if raw[8:10] == b"= " else b""
    try:
        return int(text)
    except ValueError:
        raise InvalidFileError(f"HDU {hdu}: {name} is not an integer ({text!r})") from None


def data_unit_size(cards: dict[bytes, bytes], hdu: int) -> int:
    """Size in bytes (unpadded) of the data unit that follows a header (FITS standard 4.4.1)."""
    naxis = _card_int(cards, "NAXIS", 0, hdu)
    if naxis == 0:
        return 0
    bitpix = _card_int(cards, "BITPIX", 8, hdu)
    axes = [_card_int(cards, f"NAXIS{i}", 0, hdu) for i in range(1, naxis + 1)]
    if any(a < 0 for a in axes):
        raise InvalidFileError(f"HDU {hdu}: negative NAXISn")
    random_groups = b"GROUPS" in cards and naxis > 1 and axes[0] == 0
    elements = math.prod(axes[1:] if random_groups else axes)
    pcount = _card_int(cards, "PCOUNT", 0, hdu)
    gcount = _card_int(cards, "GCOUNT", 1, hdu)
    return abs(bitpix) // 8 * gcount * (pcount + elements)


def _padded(n: int) -> int:
    return math.ceil(n / BLOCK) * BLOCK


def walk_headers(
    read: RangeReader, size: int, required: tuple[str, ...], limits: HeaderLimits = HeaderLimits()
) -> HeaderScan:
    """Walk HDUs until one header holds every `required` keyword (or the object ends).

    Raises InvalidFileError for anything that is not a well-formed FITS header sequence.
    """
    if size == 0:
        raise InvalidFileError("the object is empty (0 bytes)")
    if size < BLOCK and not read(0, min(size, 9)).startswith(b"SIMPLE  ="):
        # Shorter than one block: say what it is (not FITS at all) before saying it is too short.
        raise InvalidFileError(_NOT_FITS)
    reader = _ForwardBlockReader(read, size, limits.initial_read)
    out = bytearray()
    offset, hdu = 0, 0
    budget = _Budget(limits)
    required_set = {k.encode("ascii", "replace") for k in required}
    closest: set[bytes] = set(required_set)
    while offset < size:
        if hdu >= limits.max_hdus:
            raise InvalidFileError(
                f"no header with the required keywords in the first {limits.max_hdus} HDUs (HEADER_MAX_HDUS)"
            )
        budget.kept = len(out)
        header, cards, offset = _read_header(reader, offset, size, hdu, budget)
        data = data_unit_size(cards, hdu)
        if offset + data > size:
            raise InvalidFileError(
                f"HDU {hdu}: data unit is truncated (header declares {data} bytes, "
                f"only {size - offset} remain in the object)"
            )
        out += header
        missing = required_set.difference(cards)
        if not missing:
            return HeaderScan(bytes(out), reader.bytes_read, hdu)
        if len(missing) < len(closest):
            closest = missing
        # Not the header we need: stand in zeros for its data unit so later HDUs keep their positions
        # in the stream astropy reads; the bytes are never fetched.
        padded = _padded(data)
        if padded:
            if len(out) + padded > MAX_ZERO_FILL:
                raise InvalidFileError(
                    f"HDU {hdu} lacks the required keywords and its data unit ({padded} bytes) is too "
                    "large to skip; ingest the file with `lambda-ingest ingest` instead"
                )
            out += bytes(padded)
        offset += padded
        hdu += 1
    # Every HDU walked, none validated: ocs_archive will say which keywords are missing.
    names = tuple(k for k in required if k.encode("ascii", "replace") in closest)
    return HeaderScan(bytes(out), reader.bytes_read, None, names)


@dataclass
class _Budget:
    """What a walk may still read: header bytes kept so far (HEADER_MAX_BYTES) and cards seen (HEADER_MAX_CARDS)."""

    limits: HeaderLimits
    kept: int = 0
    cards: int = 0


def _read_header(
    reader: _ForwardBlockReader, offset: int, size: int, hdu: int, budget: _Budget
) -> tuple[bytearray, dict[bytes, bytes], int]:
    """One HDU's header blocks from `offset` through its END card: (blocks, first card per keyword, next offset)."""
    header, cards = bytearray(), dict[bytes, bytes]()
    while True:
        if offset + BLOCK > size:
            raise InvalidFileError(f"HDU {hdu}: header is truncated or has no END card before the end of the object")
        block = reader.block(offset)
        if hdu == 0 and not header and not block.startswith(b"SIMPLE  ="):
            raise InvalidFileError(_NOT_FITS)
        offset += BLOCK
        header += block
        if budget.kept + len(header) > budget.limits.max_bytes:
            raise InvalidFileError(
                f"headers exceed {budget.limits.max_bytes} bytes (HEADER_MAX_BYTES); refusing to read further"
            )
        if _scan_block(block, cards, hdu, budget):
            return header, cards, offset


def _scan_block(block: bytes, cards: dict[bytes, bytes], hdu: int, budget: _Budget) -> bool:
    """Record the block's cards (first one per keyword); True when it holds the END card."""
    for i in range(0, BLOCK, CARD):
        card = block[i : i + CARD]
        if card == END_CARD:
            return True
        if any(c < 0x20 or c > 0x7E for c in card):
            raise InvalidFileError(f"HDU {hdu}: header card {len(cards) + 1} holds non-ASCII or control characters")
        budget.cards += 1
        if budget.cards > budget.limits.max_cards:
            raise InvalidFileError(
                f"more than {budget.limits.max_cards} header cards (HEADER_MAX_CARDS); refusing to read on"
            )
        keyword = card[:8].rstrip()
        if keyword and keyword not in cards:
            cards[keyword] = card
    return False


_NOT_FITS = "not a FITS file: it does not start with a SIMPLE card"


class SourceReadError(Exception):
    """Reading the underlying stream failed (a network read timeout is an OSError too): the source's fault,
    not a broken .tar.gz. Carries the original error, which the caller re-raises for its storage layer."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class _CountingStream(io.RawIOBase):
    """A read-only stream that counts and caps the bytes taken from the underlying one.

    `source`: the stream is the object's own (network) body, so its read errors are I/O faults.
    """

    def __init__(self, raw: BinaryIO, cap: int, what: str, *, source: bool = False) -> None:
        self._raw, self._cap, self._what, self._source = raw, cap, what, source
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        if self.count >= self._cap:
            raise InvalidFileError(f"{self._what} exceeds the scan limit of {self._cap} bytes")
        want = min(len(b), self._cap - self.count)
        if self._source:
            try:
                data = self._raw.read(want)
            except Exception as exc:
                raise SourceReadError(exc) from exc
        else:
            data = self._raw.read(want)
        n = len(data)
        b[:n] = data
        self.count += n
        return n


class _OneMember:
    """Presents a single tar member to ocs_archive's member selector, which expects a TarFile."""

    def __init__(self, member: tarfile.TarInfo) -> None:
        self._member = member

    def getmembers(self) -> list[tarfile.TarInfo]:
        return [self._member]

    def extractfile(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        return member


def _sequential_reader(stream: BinaryIO) -> RangeReader:
    """A RangeReader over a forward-only stream (ranges never go backwards in walk_headers)."""
    position = 0

    def read(offset: int, length: int) -> bytes:
        nonlocal position
        while position < offset:  # discard the skipped data unit, decompressing it in bounded chunks
            skipped = stream.read(min(offset - position, 1024 * 1024))
            if not skipped:
                return b""
            position += len(skipped)
        data = stream.read(length)
        position += len(data)
        return data

    return read


def walk_tar_member_headers(
    stream: BinaryIO,
    selector: Callable[[object], object],
    required: tuple[str, ...],
    limits: HeaderLimits = HeaderLimits(),
) -> tuple[bytes, int]:
    """Find the FITS member `selector` (ocs_archive's `_get_meta_file_from_targz`) would pick.

    Returns a small `.tar.gz` holding only that member's headers, and the compressed bytes consumed.
    """
    counted = _CountingStream(stream, limits.tar_max_scan_bytes, "the compressed tar stream", source=True)
    try:
        # The decompressed side is capped too, so a gzip bomb costs bounded work and memory.
        inflated = _CountingStream(
            gzip.GzipFile(fileobj=counted), limits.tar_max_scan_bytes, "the decompressed tar stream"
        )
        with tarfile.open(fileobj=inflated, mode="r|") as tar:
            for member in tar:
                if member.offset_data > limits.tar_max_scan_bytes:
                    break
                if not member.isfile():
                    continue
                try:
                    selector(_OneMember(member))
                except Exception:  # ocs_archive's FileSpecificationException: not the metadata member
                    continue
                fileobj = tar.extractfile(member)
                assert fileobj is not None
                scan = walk_headers(_sequential_reader(fileobj), member.size, required, limits)
                return _single_member_targz(member.name, scan.fits_bytes), counted.count
    except SourceReadError as exc:
        raise exc.original from None  # the storage layer classifies it (StorageUnavailableError)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise InvalidFileError(f"not a readable .tar.gz ({exc})") from None
    raise InvalidFileError(
        "the tar file has no FITS member with the metadata (or it lies beyond "
        f"{limits.tar_max_scan_bytes} bytes, TAR_MAX_SCAN_BYTES)"
    )


def _single_member_targz(name: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()
