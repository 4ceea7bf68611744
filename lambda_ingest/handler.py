"""Lambda entry point: decorators, decode the event, delegate each object, map outcomes.

- SQS (the deployed path): one partial batch response; only records that failed (a transient failure, a
  fault of the system, or not started for lack of time) are reported, so one bad message never makes its
  batch-mates retry, and a batch in which every record failed still returns normally.
- S3 Batch Operations (backfills): one result per task in the job's completion report (batch_operations).
- Direct S3 notification or EventBridge: every record is processed; if any failed the invocation raises
  so Lambda retries it (records already done are absorbed by idempotency).

Time budget: before each record the handler checks that the remaining time covers a safety margin plus an
estimate for the object (PER_RECORD_MS + size / THROUGHPUT_BYTES_PER_S). A record it does not start is
reported failed (SQS delivers it again), so the invocation returns before its deadline instead of timing
out with the whole batch. Rule for the deployment (asserted by infra): function timeout >=
SAFETY_MARGIN_MS + batch_size * (PER_RECORD_MS + largest frame / THROUGHPUT_BYTES_PER_S), so that in normal
operation no record is deferred (each deferral counts as a receive towards the DLQ).
"""

from __future__ import annotations

import math
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_ingest import batch_operations, events, snapstart
from lambda_ingest.errors import BackoffRetryError, SystemFaultError, TransientError
from lambda_ingest.observability import logger, metrics, opentsdb, tracer
from lambda_ingest.outcomes import processor, report_system_fault

# Time kept back for the batch response, the metric flush and the last log lines.
SAFETY_MARGIN_MS = 10_000
# Header reads, archive lookup and registration, landing delete: small and size-independent.
PER_RECORD_MS = 3_000
# What one record moves per second, at worst: the md5 stream (multipart uploads) plus the server-side copy.
# Measured well above this on the archive's frame sizes (docs/reliability.md); kept conservative.
THROUGHPUT_BYTES_PER_S = 50 * 1024 * 1024

_batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_context: Any = None  # the current invocation's context, for the time budget
snapstart.prepare()  # init loads what the first record needs; SnapStart restore hooks


def record_budget_ms(size: int | None) -> int:
    """The time one record of `size` bytes may need, margin included."""
    return SAFETY_MARGIN_MS + PER_RECORD_MS + math.ceil((size or 0) / THROUGHPUT_BYTES_PER_S * 1000)


def _check_time(ref: events.ObjectRef) -> None:
    if _context is None:
        return
    remaining = _context.get_remaining_time_in_millis()
    needed = record_budget_ms(ref.size)
    if remaining < needed:
        logger.warning(
            "not started: not enough time left in this invocation",
            extra={"object": ref.uri, "remaining_ms": remaining, "needed_ms": needed},
        )
        metrics.add_metric(name="RecordsDeferred", unit=MetricUnit.Count, value=1)
        raise BackoffRetryError(f"not started: {remaining} ms left, {needed} ms needed; delivered again", obj=ref.uri)


def _process_refs(refs: list[events.ObjectRef]) -> list[dict[str, Any]]:
    outcomes, failures = [], []
    for ref in refs:
        try:
            _check_time(ref)
            outcomes.append(processor().process(ref))
        except Exception as exc:  # every record gets its turn before the failure is reported
            failures.append(exc)
    if failures:
        raise (
            failures[0]
            if len(failures) == 1
            else TransientError(
                f"{len(failures)} of {len(refs)} objects failed: " + "; ".join(str(f) for f in failures)
            )
        )
    return outcomes


def _sqs_record(record: SQSRecord) -> list[dict[str, Any]]:
    # Read from the raw attributes: the data class raises KeyError when SQS did not send the count.
    count = (record.raw_event.get("attributes") or {}).get("ApproximateReceiveCount")
    return _process_refs(events.from_message_body(record.body, int(count) if count else None))


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _context
    try:
        # Settings (and ocs_archive's variables) are validated here: a bad configuration fails the whole
        # invocation (every record retried, then the DLQ) and is reported as a system fault.
        processor().use_context(context)
    except SystemFaultError as exc:
        report_system_fault(exc)
        raise
    _context = context
    try:
        if batch_operations.is_batch_operations_event(event):
            return batch_operations.answer(event)
        if events.is_sqs_event(event):
            logger.set_correlation_id(event["Records"][0].get("messageId"))
            return process_partial_response(event=event, record_handler=_sqs_record, processor=_batch, context=context)
        logger.set_correlation_id(event.get("id") or _request_id(event))
        return {"outcomes": _process_refs(events.object_refs(event))}
    finally:
        _context = None
        opentsdb.flush()  # asynchronous OpenTSDB sends finish before the sandbox freezes


def _request_id(event: dict[str, Any]) -> str | None:
    records = event.get("Records") or [{}]
    return (records[0].get("responseElements") or {}).get("x-amz-request-id")
