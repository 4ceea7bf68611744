"""Every way an ingest can end other than success, in one tree.

```
IngestError                     base of everything lambda_ingest raises
├── PermanentError              never retried; the landing object is kept and tagged with the reason
│   │                           (alias: ocs_ingester's DoNotRetryError)
│   ├── InvalidFileError        not FITS, truncated/unterminated header, header over the safety limits,
│   │                           tar without a FITS member, zero-byte object
│   ├── RecordError             ocs_archive refused it: missing required headers, OBSTYPE not inferable,
│   │                           unsupported extension
│   ├── ArchiveRejectedError    the archive answered 4xx (other than 408/429) to the record
│   └── VersionIdTooLongError   the archive bucket issued a VersionId the archive cannot store (> 32)
├── NotIngestedError            nothing to do and nothing wrong with a file; not retried, not tagged
│   │                           (alias: ocs_ingester's NonFatalDoNotRetryError)
│   ├── ObjectGoneError         the landing object no longer exists (deleted before processing)
│   ├── ObjectChangedError      the landing object was overwritten after the event; the newer upload has
│   │                           its own event
│   └── AlreadyIngestedError    raised only by the ocs_ingester-compatible API (the engine returns
│                               status "already_ingested" instead)
├── TransientError              retry later with backoff; the landing object is untouched
│   │                           (alias: ocs_ingester's BackoffRetryError)
│   ├── StorageUnavailableError S3 throttling, 5xx, timeouts, connection errors
│   └── ArchiveUnavailableError archive 5xx/408/429, timeouts, refused connections, unexpected answers
│                               (`maybe_applied` when the archive may have registered it all the same)
└── ConfigurationError          a setting is missing or invalid (raised at start)
```

Every error carries `reason` (plain words, naming the problem) and `reason_class` (a short stable
identifier used as a metric dimension and in the `ingest-reason` tag).
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class. `str(err)` names the object (when known) and the reason."""

    reason_class = "error"

    def __init__(self, reason: str, *, obj: str | None = None) -> None:
        self.reason = reason
        self.obj = obj
        super().__init__(f"{obj}: {reason}" if obj else reason)

    def for_object(self, obj: str) -> IngestError:
        """Attach the object name (s3://bucket/key) once it is known higher up the stack."""
        if self.obj is None:
            self.obj = obj
            self.args = (f"{obj}: {self.reason}",)
        return self


class PermanentError(IngestError):
    reason_class = "permanent"


class InvalidFileError(PermanentError):
    reason_class = "invalid_file"


class RecordError(PermanentError):
    reason_class = "invalid_record"


class ArchiveRejectedError(PermanentError):
    reason_class = "archive_rejected"

    def __init__(self, reason: str, *, status: int | None = None, obj: str | None = None) -> None:
        self.status = status
        super().__init__(reason, obj=obj)


class VersionIdTooLongError(PermanentError):
    reason_class = "version_id_too_long"


class NotIngestedError(IngestError):
    reason_class = "not_ingested"


class ObjectGoneError(NotIngestedError):
    reason_class = "object_gone"


class ObjectChangedError(NotIngestedError):
    reason_class = "object_changed"


class AlreadyIngestedError(NotIngestedError):
    reason_class = "already_ingested"


class TransientError(IngestError):
    reason_class = "transient"


class StorageUnavailableError(TransientError):
    reason_class = "storage_unavailable"


class ArchiveUnavailableError(TransientError):
    """`maybe_applied`: the archive may have acted on the request although no success reached us (a read
    timeout, a connection dropped after sending, a 5xx other than 503/429/408)."""

    reason_class = "archive_unavailable"

    def __init__(self, reason: str, *, maybe_applied: bool = False, obj: str | None = None) -> None:
        self.maybe_applied = maybe_applied
        super().__init__(reason, obj=obj)


class ConfigurationError(IngestError):
    reason_class = "configuration"


# ocs_ingester's names, so `except DoNotRetryError` keeps working after switching imports.
DoNotRetryError = PermanentError
BackoffRetryError = TransientError
RetryError = TransientError
NonFatalDoNotRetryError = NotIngestedError
