"""S3 Batch Operations: ingest the objects of a manifest (S3 Inventory or CSV) on AWS's own engine.

A job with a `LambdaInvoke` operation calls the function once per object with an invocation document
(schema "1.0": `tasks[].s3BucketArn`; "2.0": `tasks[].s3Bucket` and `job.userArguments`), and expects one
result per task, which lands in the job's completion report:

| outcome of the object                         | resultCode         | resultString                        |
|-----------------------------------------------|--------------------|-------------------------------------|
| ingested / already ingested / skipped         | Succeeded          | outcome and archive key (or reason) |
| rejected: the file is at fault                | PermanentFailure   | the reason (the object is tagged)   |
| system fault or transient (or anything else)  | TemporaryFailure   | the reason; Batch Operations retries |

Decoding and answers use Powertools' S3BatchOperationEvent/Response (both schemas, keys URL-decoded).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3BatchOperationEvent, S3BatchOperationResponse

from lambda_ingest.errors import IngestError
from lambda_ingest.events import ObjectRef
from lambda_ingest.observability import logger
from lambda_ingest.outcomes import processor

SUCCEEDED = "Succeeded"
TEMPORARY_FAILURE = "TemporaryFailure"
PERMANENT_FAILURE = "PermanentFailure"
RESULT_STRING_MAX = 1024  # keeps each completion-report row readable


def is_batch_operations_event(event: dict[str, Any]) -> bool:
    return "invocationSchemaVersion" in event and "tasks" in event and "job" in event


def task_ref(task: Any) -> ObjectRef:
    """The landing object a task names; the version id pins its bytes when the manifest carries one."""
    return ObjectRef(bucket=task.s3_bucket, key=task.s3_key, version_id=task.s3_version_id or None)


def result_for(ref: ObjectRef) -> tuple[str, str]:
    """(resultCode, resultString) for one object, run through the handler's per-object path."""
    try:
        outcome = processor().process(ref)
    except IngestError as exc:  # system faults and transient errors: not the file's fault, retry later
        return TEMPORARY_FAILURE, f"{exc.reason_class}: {exc.reason}"
    except Exception as exc:  # unknown: never blame the file for what may be ours
        logger.exception("batch operations task failed", extra={"object": ref.uri})
        return TEMPORARY_FAILURE, f"{type(exc).__name__}: {exc}"
    status = outcome.get("outcome", "")
    if status == "rejected":
        return PERMANENT_FAILURE, f"rejected ({outcome.get('class')}): {outcome.get('reason')}"
    if status == "skipped":
        return SUCCEEDED, f"skipped: {outcome.get('reason')}"
    return SUCCEEDED, f"{status}: {outcome.get('archive_key')} {outcome.get('version_id') or ''}".strip()


def answer(event: dict[str, Any]) -> dict[str, Any]:
    """The invocation's response document: one result per task (Batch Operations sends one task)."""
    parsed = S3BatchOperationEvent(event)
    logger.set_correlation_id(parsed.invocation_id)
    # A task left out of the results must not pass for a success in the completion report.
    response = S3BatchOperationResponse(
        parsed.invocation_schema_version, parsed.invocation_id, treat_missing_keys_as=PERMANENT_FAILURE
    )
    for task in parsed.tasks:
        code, text = result_for(task_ref(task))
        response.add_result(task.build_task_batch_response(code, text[:RESULT_STRING_MAX]))
    if len(response.results) == 1:
        return response.asdict()
    # Powertools' asdict() insists on exactly one result; the documented shape holds any number.
    return {
        "invocationSchemaVersion": response.invocation_schema_version,
        "treatMissingKeysAs": response.treat_missing_keys_as,
        "invocationId": response.invocation_id,
        "results": [result.asdict() for result in response.results],
    }
