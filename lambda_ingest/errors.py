"""Every way an ingest can end other than success, in one tree.

```
IngestError                         base of everything lambda_ingest raises
├── DoNotRetryError                 (ocs_ingester) retrying the same call cannot help
│   ├── RejectedError               the FILE is at fault: kept, tagged ingest-status=rejected, FilesRejected
│   │   ├── InvalidFileError        not FITS, truncated/unterminated header, over the safety limits,
│   │   │                           tar without a FITS member, zero-byte object
│   │   ├── RecordError             ocs_archive refused it: missing required headers, OBSTYPE not
│   │   │                           inferable, unsupported extension, a value too long for the archive
│   │   └── ArchiveRejectedError    the archive answered 400 about this record
│   └── SystemFaultError            the SYSTEM is at fault: an operator must fix something. The Lambda
│       │                           retries it (SQS, then the DLQ) and alarms (SystemFaults); never a tag
│       ├── ConfigurationError      a setting is missing or invalid (token, API_ROOT, ocs_archive mapping)
│       ├── ArchiveAccessError      archive 401/403 (token), 404/3xx from the API root (wrong API_ROOT)
│       └── StorageAccessError      NoSuchBucket, AccessDenied, ExpiredToken, KMS, unversioned archive
│                                   bucket, a VersionId longer than the archive stores (not AWS S3)
├── NonFatalDoNotRetryError         (ocs_ingester) nothing to do, nothing wrong: not retried, not tagged
│   ├── SkippedError                the landing object is no longer the one the event named
│   │   ├── ObjectGoneError         deleted before it was processed
│   │   └── ObjectChangedError      overwritten after the event (the newer upload has its own event)
│   └── AlreadyIngestedError        the archive holds these bytes (ocs_ingester's API only; the engine
│                                   returns status "already_ingested" instead)
└── TransientError                  retry later; the landing object is untouched
    ├── BackoffRetryError           (ocs_ingester) retry with backoff
    │   ├── StorageUnavailableError S3 throttling, 5xx, timeouts, connection and read errors
    │   └── ArchiveUnavailableError archive 5xx/408/429, timeouts, refused connections
    │                               (`maybe_applied` when the archive may have registered it all the same)
    └── RetryError                  (ocs_ingester) retry at once. Never raised: ocs_ingester 3.2.0 never
                                    raises it either, and its main caller retries it without limit or
                                    pause, which only a fault known to clear at once could justify
```

ocs_ingester's four classes keep their names and meanings and none is a subclass of another, so a caller's
`except DoNotRetryError / NonFatalDoNotRetryError / RetryError / BackoffRetryError` chain works unchanged.

Every error carries `reason` (plain words, one line) and `reason_class` (a short stable identifier used
as a metric dimension and in the `ingest-reason` tag).
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class. `str(err)` names the object (when known) and the reason."""

    reason_class = "error"

    def __init__(self, reason: str, *, obj: str | None = None) -> None:
        self.reason = " ".join(str(reason).split())  # always one line: it goes into logs, tags and stdout
        self.obj = obj
        super().__init__(f"{obj}: {self.reason}" if obj else self.reason)

    def for_object(self, obj: str) -> IngestError:
        """Attach the object name (s3://bucket/key) once it is known higher up the stack."""
        if self.obj is None:
            self.obj = obj
            self.args = (f"{obj}: {self.reason}",)
        return self


# --- ocs_ingester's families ------------------------------------------------------------------------


class DoNotRetryError(IngestError):
    reason_class = "do_not_retry"


class NonFatalDoNotRetryError(IngestError):
    reason_class = "non_fatal"


class TransientError(IngestError):
    reason_class = "transient"


class BackoffRetryError(TransientError):
    reason_class = "backoff_retry"


class RetryError(TransientError):
    reason_class = "retry"


# --- the file is at fault ------------------------------------------------------------------------------


class RejectedError(DoNotRetryError):
    reason_class = "rejected"


class InvalidFileError(RejectedError):
    reason_class = "invalid_file"


class RecordError(RejectedError):
    reason_class = "invalid_record"


class ArchiveRejectedError(RejectedError):
    reason_class = "archive_rejected"

    def __init__(self, reason: str, *, status: int | None = None, obj: str | None = None) -> None:
        self.status = status
        super().__init__(reason, obj=obj)


# --- the system is at fault -----------------------------------------------------------------------------


class SystemFaultError(DoNotRetryError):
    reason_class = "system_fault"


class ConfigurationError(SystemFaultError):
    reason_class = "configuration"


class ArchiveAccessError(SystemFaultError):
    reason_class = "archive_access"

    def __init__(self, reason: str, *, status: int | None = None, obj: str | None = None) -> None:
        self.status = status
        super().__init__(reason, obj=obj)


class StorageAccessError(SystemFaultError):
    reason_class = "storage_access"


# --- nothing to do ----------------------------------------------------------------------------------------


class SkippedError(NonFatalDoNotRetryError):
    reason_class = "skipped"


class ObjectGoneError(SkippedError):
    reason_class = "object_gone"


class ObjectChangedError(SkippedError):
    reason_class = "object_changed"


class AlreadyIngestedError(NonFatalDoNotRetryError):
    reason_class = "already_ingested"


# --- retry later -------------------------------------------------------------------------------------------


class StorageUnavailableError(BackoffRetryError):
    reason_class = "storage_unavailable"


class ArchiveUnavailableError(BackoffRetryError):
    """`maybe_applied`: the archive may have acted on the request although no success reached us (a read
    timeout, a connection dropped after sending, a 5xx other than 503/429/408)."""

    reason_class = "archive_unavailable"

    def __init__(self, reason: str, *, maybe_applied: bool = False, obj: str | None = None) -> None:
        self.maybe_applied = maybe_applied
        super().__init__(reason, obj=obj)
