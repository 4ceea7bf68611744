"""A stand-in for the Lambda context, for invoking the handler outside Lambda (replay, demo, tests, bench)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LocalContext:
    """The attributes Powertools reads from a Lambda context.

    `get_remaining_time_in_millis` also bounds Idempotency's "in progress" mark: a crashed local run's mark
    expires after `timeout_s` instead of blocking the object's retries for the whole expiry window.
    """

    function_name: str = "lambda-ingest-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:lambda-ingest-local"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/lambda-ingest-local"
    log_stream_name: str = "local"
    timeout_s: float = 900.0

    def get_remaining_time_in_millis(self) -> int:
        return int(self.timeout_s * 1000)
