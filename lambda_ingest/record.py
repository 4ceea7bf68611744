"""The archive record and canonical key of a file, built by ocs_archive from its headers.

ocs_archive owns the header rules (required headers, null normalisation, OBSTYPE and reduction-level
repair, public date, WCS footprint, canonical path); this module only feeds it the header blocks instead
of the whole file, and makes the result safe to send as JSON.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import requests
from astropy.utils.exceptions import AstropyWarning
from dateutil.parser import parse as parse_date

from lambda_ingest.errors import ArchiveUnavailableError, RecordError

# The archive's column limits (science-archive-api.md); checked before any copy so an over-long value is
# a clear rejection instead of a 400 after the copy (or a 500 for basename).
FIELD_LIMITS = {
    "basename": 1000,
    "site_id": 3,
    "telescope_id": 4,
    "instrument_id": 64,
    "proposal_id": 200,
    "target_name": 200,
    "primary_optical_element": 100,
}
MAX_INT32 = 2147483647
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ArchiveRecord:
    """What ocs_archive made of a file: the POST payload (without version_set) and where it is stored."""

    payload: dict[str, Any]
    basename: str
    extension: str
    archive_key: str
    content_type: str
    is_thumbnail: bool

    @property
    def filename(self) -> str:
        return self.basename + self.extension

    @property
    def content_disposition(self) -> str:
        return f"attachment; filename={self.filename}"

    @property
    def observation_date(self) -> datetime | None:
        value = self.payload.get("observation_date")
        if not value:
            return None
        try:
            parsed = parse_date(str(value))
        except (ValueError, OverflowError):
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def observation_end(self, end_time_key: str = "UTSTOP") -> datetime | None:
        """When the exposure ended, as ocs_ingester computes it for its ingest-lag metric."""
        start = self.observation_date
        if start is None:
            return None
        end_time = (self.payload.get("headers") or {}).get(end_time_key)
        if end_time:
            try:
                end = parse_date(str(end_time))
            except (ValueError, OverflowError):
                end = None
            if end is not None:
                end_date = start.date()
                if abs(start.hour - end.hour) > 12:  # the exposure crossed midnight
                    end_date += timedelta(days=1)
                return datetime.combine(end_date, end.time(), tzinfo=UTC)
        if self.payload.get("exposure_time"):
            return start + timedelta(seconds=float(self.payload["exposure_time"]))
        return start


def split_filename(path: str) -> tuple[str, str]:
    """ocs_archive's rule: basename up to the first dot, extension the rest (".fits.fz")."""
    from ocs_archive.input.file import File

    basename, extension = File.get_basename_and_extension(path)
    return basename or "", extension or ""


def datafile_class(extension: str) -> type:
    """ocs_archive's DataFile class for an extension (honours FILETYPE_MAPPING_OVERRIDES)."""
    from ocs_archive.input.file import FileSpecificationException
    from ocs_archive.input.filefactory import FileFactory

    try:
        return FileFactory.get_datafile_class_for_extension(extension)
    except FileSpecificationException as exc:
        raise RecordError(f"unsupported file type: {exc}") from None


def is_thumbnail_class(cls: type) -> bool:
    from ocs_archive.input.thumbnailfile import ThumbnailFile

    return issubclass(cls, ThumbnailFile)


def is_fits_class(cls: type) -> bool:
    from ocs_archive.input.fitsfile import FitsFile

    return issubclass(cls, FitsFile)


def is_tar_class(cls: type) -> bool:
    from ocs_archive.input.tarwithfitsfile import TarWithFitsFile

    return issubclass(cls, TarWithFitsFile)


def required_headers_for(cls: type) -> tuple[str, ...]:
    from ocs_archive.settings import settings as archive_settings

    if is_thumbnail_class(cls):
        return tuple(archive_settings.REQUIRED_THUMBNAIL_METADATA)
    return tuple(archive_settings.REQUIRED_HEADERS)


def json_safe(value: Any) -> Any:
    """Header values JSON cannot carry become null (astropy's Undefined, NaN) or text (complex, bytes)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if type(value).__name__ == "Undefined":  # astropy.io.fits.card.Undefined: a card with no value
        return None
    if hasattr(value, "item"):  # numpy scalars
        return json_safe(value.item())
    return str(value)


def build_record(
    fileobj: BinaryIO,
    filename: str,
    file_metadata: dict[str, Any] | None = None,
    *,
    required_headers: tuple[str, ...] | None = None,
    blacklist_headers: tuple[str, ...] | None = None,
) -> ArchiveRecord:
    """Run ocs_archive on `fileobj` (whole file or header blocks) exactly as ocs_ingester does."""
    from ocs_archive.input.file import File, FileSpecificationException
    from ocs_archive.settings import settings as archive_settings

    open_file = File(fileobj, filename)
    cls = datafile_class(open_file.extension)
    kwargs: dict[str, Any] = {
        "blacklist_headers": (
            blacklist_headers if blacklist_headers is not None else archive_settings.HEADER_BLACKLIST
        ),
    }
    if required_headers is not None:
        kwargs["required_headers"] = required_headers
    elif is_thumbnail_class(cls):
        kwargs["required_headers"] = tuple(archive_settings.REQUIRED_THUMBNAIL_METADATA)
    try:
        # catch_warnings swaps process-wide state: serialise it, or a concurrent caller's exit restores the
        # filters mid-way and a WCS warning escapes (an error under -W error). The work is GIL-bound anyway.
        with _WARNINGS_LOCK, warnings.catch_warnings():
            # The header-only stream ends before the data units: astropy warns that the file "may have
            # been truncated", and WCS notes header fixes. Expected; must not become errors under -W error.
            warnings.simplefilter("ignore", AstropyWarning)
            datafile = cls(open_file, dict(file_metadata or {}), **kwargs)
            header_data = datafile.get_header_data()
            payload = header_data.get_archive_frame_data()
            payload["headers"] = header_data.get_headers()
            payload["area"] = datafile.get_wcs_corners()
            payload["basename"] = open_file.basename
            archive_key = datafile.get_filestore_path()
            content_type = datafile.get_filestore_content_type()
    except FileSpecificationException as exc:
        raise RecordError(str(exc)) from None
    except requests.RequestException as exc:  # ocs_archive asking the Observation Portal for proposal tags
        raise ArchiveUnavailableError(f"observation portal unreachable: {type(exc).__name__}") from None
    except Exception as exc:  # ocs_archive's own parsing (dates, integers, WCS) on bad header values
        raise RecordError(f"ocs_archive could not build a record: {type(exc).__name__}: {exc}") from None
    record = ArchiveRecord(
        payload=json_safe(payload),
        basename=open_file.basename,
        extension=open_file.extension,
        archive_key=archive_key,
        content_type=content_type,
        is_thumbnail=is_thumbnail_class(cls),
    )
    check_archive_limits(record)
    return record


def check_archive_limits(record: ArchiveRecord) -> None:
    """Refuse values the archive would reject, before anything is copied."""
    payload = record.payload
    for field, limit in FIELD_LIMITS.items():
        value = payload.get(field)
        if isinstance(value, str) and len(value) > limit:
            raise RecordError(
                f"{field} {value[:40]!r}{'...' if len(value) > 40 else ''} is {len(value)} characters; "
                f"the archive allows at most {limit}"
            )
    if not payload.get("basename"):
        raise RecordError("the file name has no basename")
    for field in ("observation_id", "request_id"):
        value = payload.get(field)
        if value in (None, ""):
            continue
        if not str(value).isdigit() or int(value) > MAX_INT32:
            raise RecordError(f"{field} {value!r} is not an integer between 0 and {MAX_INT32}")
    if not record.is_thumbnail and not payload.get("configuration_type"):
        # ocs_archive turns OBSTYPE UNKNOWN into "" when it cannot infer one; the archive refuses "" (400).
        raise RecordError("no observation type: OBSTYPE is missing, blank or UNKNOWN and could not be inferred")
    if not record.is_thumbnail and not payload.get("observation_date"):
        # The archive accepts it but hides the frame everywhere: a silent loss, so reject it.
        raise RecordError("no observation date (DATE-OBS): the archive would hide the frame")


def metadata_from_user_metadata(user_metadata: dict[str, str]) -> dict[str, str]:
    """ocs_ingester's `file_metadata` from S3 user metadata (`x-amz-meta-propid` -> `PROPID`).

    S3 lower-cases metadata names, so they are upper-cased back, except the names ocs_archive itself
    spells in lower case (the thumbnail keys `frame_basename` and `size`).
    """
    from ocs_archive.settings import settings as archive_settings

    lower_names = {archive_settings.THUMBNAIL_FRAME_BASENAME_KEY, archive_settings.THUMBNAIL_SIZE_KEY}
    lower_names |= {k for k in archive_settings.REQUIRED_THUMBNAIL_METADATA if k != k.upper()}
    return {(k if k in lower_names else k.upper()): v for k, v in user_metadata.items()}


def header_stream(fits_bytes: bytes, name: str) -> io.BytesIO:
    """A file object over header blocks, named so ocs_archive derives basename and extension."""
    stream = io.BytesIO(fits_bytes)
    stream.name = name
    return stream
