"""Lambda entry point: decorators, decode the event, delegate each object, map outcomes.

- SQS (the deployed path): one partial batch response; only records with a transient failure are
  reported, so one bad message never makes its batch-mates retry.
- Direct S3 notification or EventBridge: every record is processed; if any failed transiently the
  invocation raises so Lambda retries it (records already done are absorbed by idempotency).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_ingest import events, snapstart
from lambda_ingest.errors import TransientError
from lambda_ingest.observability import logger, metrics, opentsdb, tracer
from lambda_ingest.outcomes import processor

_batch = BatchProcessor(event_type=EventType.SQS)
snapstart.prepare()  # init loads what the first record needs; SnapStart restore hooks


def _process_refs(refs: list[events.ObjectRef]) -> list[dict[str, Any]]:
    outcomes, failures = [], []
    for ref in refs:
        try:
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
    processor().use_context(context)
    try:
        if events.is_sqs_event(event):
            logger.set_correlation_id(event["Records"][0].get("messageId"))
            return process_partial_response(event=event, record_handler=_sqs_record, processor=_batch, context=context)
        logger.set_correlation_id(event.get("id") or _request_id(event))
        return {"outcomes": _process_refs(events.object_refs(event))}
    finally:
        opentsdb.flush()  # asynchronous OpenTSDB sends finish before the sandbox freezes


def _request_id(event: dict[str, Any]) -> str | None:
    records = event.get("Records") or [{}]
    return (records[0].get("responseElements") or {}).get("x-amz-request-id")
