"""Run one landing object through the engine and turn what happened into an outcome: the one place
that decides exception -> outcome.

| exception                 | outcome          | returned/raised     | what the operator sees                       |
|---------------------------|------------------|---------------------|----------------------------------------------|
| (none)                    | ingested         | {"outcome": ...}    | info log line; FilesIngested, BytesCopied... |
| (none)                    | already_ingested | {"outcome": ...}    | info log line; FilesAlreadyIngested          |
| RejectedError             | rejected         | {"outcome": ...}    | landing object kept and tagged ingest-status |
|                           |                  |                     | /ingest-reason; error log; FilesRejected     |
|                           |                  |                     | {reason}                                     |
| SystemFaultError          | system_fault     | raises (record      | one-line error log; SystemFaults{reason};    |
|                           |                  | failed: SQS retries | never tagged, never skipped                  |
|                           |                  | it, then the DLQ)   |                                              |
| SkippedError              | skipped          | {"outcome": ...}    | warning log; FilesSkipped                    |
| TransientError            | transient        | raises (record      | warning log; TransientFailures               |
|                           |                  | failed)             |                                              |

Duplicate deliveries are absorbed twice over: Powertools Idempotency (DynamoDB, keyed on bucket, key and
the upload's identity: version id, else S3's sequencer, else ETag and event time) when IDEMPOTENCY_TABLE
is set, and the archive's own md5 check in the engine. Idempotency remembers successes only, for a window of
hours: rejections and faults are worked out again on every delivery, and a later upload of the same bytes
is a new upload (already_ingested, landing object removed).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from lambda_ingest import clients, publish, store
from lambda_ingest.errors import (
    BackoffRetryError,
    IngestError,
    NonFatalDoNotRetryError,
    RejectedError,
    SystemFaultError,
    TransientError,
)
from lambda_ingest.events import ObjectRef
from lambda_ingest.filestore import require_s3_filestore
from lambda_ingest.ingest import ingest_object
from lambda_ingest.observability import emit_emf, emit_failure_emf, logger, opentsdb
from lambda_ingest.settings import get_settings

STATUS_TAG = "ingest-status"
REASON_TAG = "ingest-reason"


def _ingest_once(ref: dict[str, Any]) -> dict[str, Any]:
    """The part Idempotency guards: only a success is remembered, so a rejected file whose cause was fixed
    (a header-mapping variable, the archive's configuration) is tried afresh when it is delivered again."""
    obj = _object_ref(ref)
    result = ingest_object(obj.bucket, obj.key, obj.version_id, obj.etag)
    logger.info(result.status, extra=result.summary())
    emit_emf(result)
    opentsdb.record(result)
    publish.archived(result)
    return result.summary()


def _outcome(obj: ObjectRef, attempt: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return attempt()
    except SystemFaultError as exc:
        report_system_fault(exc, obj.uri)
        publish.fault(obj, exc)
        raise  # the record fails: SQS delivers it again, then moves it to the DLQ; the file is not touched
    except RejectedError as exc:
        _reject(obj, exc)
        return {"outcome": "rejected", "object": obj.uri, "reason": exc.reason, "class": exc.reason_class}
    except NonFatalDoNotRetryError as exc:
        # Only an object really gone or replaced gets here (SkippedError); nothing to do, nothing wrong.
        _warn("skipped", "skipped", obj, exc)
        return {"outcome": "skipped", "object": obj.uri, "reason": exc.reason, "class": exc.reason_class}
    except TransientError as exc:
        _warn("transient failure", "transient", obj, exc)
        raise
    except Exception as exc:
        # No layer classified it (a bug, a library error): the system's fault until someone looks. The record
        # fails (retried, then the DLQ) and is alarmed; the file is not blamed.
        report_system_fault(exc, obj.uri)
        raise


def _warn(message: str, kind: str, obj: ObjectRef, exc: IngestError) -> None:
    """One warning line and one count (`kind`: a key of observability.FAILURE_METRICS)."""
    extra = {"outcome": kind, "object": obj.uri, "reason": exc.reason, "reason_class": exc.reason_class}
    logger.warning(message, extra=extra)
    emit_failure_emf(kind, exc.reason_class)


UNEXPECTED = "unexpected"  # the SystemFaults reason of an exception outside the error tree


def report_system_fault(exc: Exception, obj: str | None = None) -> None:
    """One error line naming the cause, and SystemFaults{reason} (alarmed): an operator must fix something."""
    if isinstance(exc, IngestError):
        reason, reason_class = exc.reason, exc.reason_class
    else:
        reason, reason_class = " ".join(f"{type(exc).__name__}: {exc}".split())[:1000], UNEXPECTED
    logger.error(
        f"system fault: {reason}",
        extra={"outcome": "system_fault", "object": obj, "reason": reason, "reason_class": reason_class},
    )
    emit_failure_emf("system_fault", reason_class)


def _object_ref(ref: dict[str, Any]) -> ObjectRef:
    return ObjectRef(**{k: v for k, v in ref.items() if k != "pin"})


def _reject(obj: ObjectRef, exc: RejectedError) -> None:
    logger.error(
        "rejected",
        extra={
            "outcome": "rejected",
            "object": obj.uri,
            "reason": exc.reason,
            "reason_class": exc.reason_class,
        },
    )
    emit_failure_emf("rejected", exc.reason_class)
    info = store.ObjectInfo(obj.bucket, obj.key, 0, obj.etag or "", obj.version_id, None)
    try:
        # The tag carries the reason in the characters S3 allows; the log line above has it in full.
        store.tag(info, {STATUS_TAG: "rejected", REASON_TAG: exc.reason})
    except IngestError as tag_error:
        # The rejection stands (and is logged); the tag is a convenience for whoever looks at the bucket.
        logger.warning("could not tag the rejected object", extra={"object": obj.uri, "error": str(tag_error)})
    publish.rejected(obj, exc)


class Processor:
    """process(ref) with Idempotency when a table is configured; `use_context` per invocation."""

    def __init__(self) -> None:
        settings = get_settings()
        require_s3_filestore(settings)  # the function copies S3 to S3: FILESTORE_TYPE=local/dummy is a mistake
        self.config = None
        self._call = _ingest_once
        if settings.idempotency_table:
            from aws_lambda_powertools.utilities.idempotency import (
                DynamoDBPersistenceLayer,
                IdempotencyConfig,
                idempotent_function,
            )

            self.config = IdempotencyConfig(
                # Same bucket, key and upload (version id, else sequencer, else ETag+event time) = the same
                # delivery; a later upload of the same bytes is a new one (events.ObjectRef.upload_identity).
                event_key_jmespath="[bucket, key, pin]",
                expires_after_seconds=settings.idempotency_expiry_seconds,
                raise_on_no_idempotency_key=True,
            )
            layer = DynamoDBPersistenceLayer(
                table_name=settings.idempotency_table, boto3_client=clients.client("dynamodb")
            )
            self._call = idempotent_function(
                _ingest_once,
                data_keyword_argument="ref",
                persistence_store=layer,
                config=self.config,
                key_prefix="lambda_ingest",
            )

    def use_context(self, context: Any) -> None:
        """Lets Idempotency expire an in-progress record when this invocation times out."""
        if self.config is not None and context is not None:
            self.config.register_lambda_context(context)

    def process(self, ref: ObjectRef) -> dict[str, Any]:
        """The outcome for one object; raises TransientError when it must be retried."""
        return _outcome(ref, lambda: self._attempt(ref))

    def _attempt(self, ref: ObjectRef) -> dict[str, Any]:
        if self.config is None:
            return self._call(ref=_as_dict(ref))
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyPersistenceLayerError,
        )

        try:
            return self._call(ref=_as_dict(ref))
        except IdempotencyAlreadyInProgressError:
            # A concurrent delivery of the same object is working on it; retry later to read its outcome.
            raise BackoffRetryError("another delivery of this object is in progress", obj=ref.uri) from None
        except IdempotencyPersistenceLayerError as exc:
            raise BackoffRetryError(f"idempotency table unavailable: {type(exc).__name__}", obj=ref.uri) from None


def _as_dict(ref: ObjectRef) -> dict[str, Any]:
    return {
        "bucket": ref.bucket,
        "key": ref.key,
        "version_id": ref.version_id,
        "etag": ref.etag,
        "size": ref.size,
        "event_time": ref.event_time,
        "receive_count": ref.receive_count,
        "sequencer": ref.sequencer,
        "pin": ref.upload_identity,
    }


@lru_cache(maxsize=1)
def processor() -> Processor:
    return Processor()


def reset_processor() -> None:
    processor.cache_clear()
