"""Fixtures of the reliability suite (issue 7): the ingest queue, S3 fault injection, log capture."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lambda_ingest.context import LocalContext as LambdaContext
from tests.reliability.support import IngestQueue, LogCapture, S3Faults, make_queue


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext()


@pytest.fixture
def queue(s3: Any, archive_api: Any) -> IngestQueue:
    """The landing bucket notifies this queue (DLQ after 5 receives); the s3:TestEvent is already consumed."""
    from lambda_ingest.handler import handler

    q = make_queue(s3)
    q.deliver_all(handler, LambdaContext())  # moto's s3:TestEvent: the handler skips it
    q.invocations.clear()
    return q


@pytest.fixture
def s3_faults(archive_api: Any) -> S3Faults:
    """S3 errors answered in S3's place on the engine's client (botocore's before-call hook), never sent."""
    faults = S3Faults()
    faults.install()
    return faults


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """The Powertools logger's JSON lines for this test (its stream is redirected, then restored)."""
    from lambda_ingest.observability import logger

    capture = LogCapture()
    handlers = list(logger.handlers)
    previous = [h.stream for h in handlers]  # type: ignore[attr-defined]
    for h in handlers:
        h.setStream(capture.buffer)  # type: ignore[attr-defined]
    try:
        yield capture
    finally:
        for h, stream in zip(handlers, previous, strict=True):
            h.setStream(stream)  # type: ignore[attr-defined]
