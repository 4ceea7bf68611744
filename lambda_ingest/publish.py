"""One EventBridge event per outcome, for downstream systems (a reduction pipeline, a catalogue, a pager).

| detail-type      | when                                           | detail (besides schema_version)             |
|------------------|------------------------------------------------|---------------------------------------------|
| "Frame Archived" | new bytes copied and registered ("ingested")   | frame, archive version, observation fields   |
| "File Rejected"  | the file is at fault (RejectedError)           | landing bucket/key, reason, reason_class     |
| "Ingest Fault"   | the system is at fault (SystemFaultError)      | landing bucket/key, reason, reason_class     |

Source "lambda_ingest" on EVENT_BUS_NAME (unset: nothing is published). An "already ingested" outcome
publishes nothing: the delivery that registered the bytes published its "Frame Archived". docs/events.md is
the contract; bump SCHEMA_VERSION's major part on any incompatible change.

Best effort: a failure to publish never fails the ingest; it is logged and counted (EventPublishFailures),
each success counted (EventsPublished).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aws_lambda_powertools.metrics import MetricUnit

from lambda_ingest import clients
from lambda_ingest.observability import logger, metrics
from lambda_ingest.settings import get_settings

if TYPE_CHECKING:
    from lambda_ingest.errors import IngestError
    from lambda_ingest.events import ObjectRef
    from lambda_ingest.ingest import IngestResult

SOURCE = "lambda_ingest"
SCHEMA_VERSION = "1.0"
FRAME_ARCHIVED = "Frame Archived"
FILE_REJECTED = "File Rejected"
INGEST_FAULT = "Ingest Fault"

# Record fields copied into "Frame Archived" as they were registered (ocs_archive's names).
_RECORD_FIELDS = (
    "observation_date",
    "observation_day",
    "site_id",
    "telescope_id",
    "instrument_id",
    "configuration_type",
    "reduction_level",
)


def url_path(url: str | None) -> str | None:
    """The version's URL without its presigned query (which expires and carries a signature)."""
    if not url:
        return None
    return urlsplit(url).path or None


def archived_detail(result: IngestResult) -> dict[str, Any]:
    record = result.record or {}
    return {
        "schema_version": SCHEMA_VERSION,
        "basename": result.basename,
        "filename": result.filename,
        "frame_id": result.frame_id,
        "archive_bucket": get_settings().bucket,
        "archive_key": result.archive_key,
        "version_id": result.version_id,
        "md5": result.md5,
        "size": result.size,
        "url_path": url_path(result.url),
        **{name: record.get(name) for name in _RECORD_FIELDS},
        "landing_bucket": result.bucket or None,
        "landing_key": result.key,
    }


def problem_detail(obj: ObjectRef, exc: IngestError) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "landing_bucket": obj.bucket,
        "landing_key": obj.key,
        "version_id": obj.version_id,
        "reason": exc.reason,
        "reason_class": exc.reason_class,
    }


def archived(result: IngestResult) -> None:
    """ "Frame Archived" for an object whose bytes this delivery registered."""
    if result.status == "ingested":
        _put(FRAME_ARCHIVED, archived_detail(result))


def rejected(obj: ObjectRef, exc: IngestError) -> None:
    _put(FILE_REJECTED, problem_detail(obj, exc))


def fault(obj: ObjectRef, exc: IngestError) -> None:
    _put(INGEST_FAULT, problem_detail(obj, exc))


def _put(detail_type: str, detail: dict[str, Any]) -> None:
    bus = get_settings().event_bus_name
    if not bus:
        return
    entry = {
        "Source": SOURCE,
        "DetailType": detail_type,
        "Detail": json.dumps(detail, default=str),
        "EventBusName": bus,
    }
    try:
        answer = clients.client("events").put_events(Entries=[entry])
        if answer.get("FailedEntryCount"):
            failed = (answer.get("Entries") or [{}])[0]
            raise RuntimeError(f"{failed.get('ErrorCode', 'failed')}: {failed.get('ErrorMessage', '')}".strip())
    except Exception as exc:  # best effort by design: whatever went wrong, the ingest's outcome stands
        logger.warning(
            "outcome event not published",
            extra={"detail_type": detail_type, "event_bus": bus, "error": f"{type(exc).__name__}: {exc}"},
        )
        metrics.add_metric(name="EventPublishFailures", unit=MetricUnit.Count, value=1)
        return
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=1)
