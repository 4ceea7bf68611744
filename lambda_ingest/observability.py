"""The one Logger, Metrics and Tracer, plus ocs_ingester's optional OpenTSDB metrics.

Powertools reads its own variables (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE,
POWERTOOLS_LOG_LEVEL, POWERTOOLS_TRACE_DISABLED); defaults here make it work with none set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import requests
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from lambda_ingest.settings import get_settings


class Measured(Protocol):
    """What the metrics read from a successful outcome (ingest.Measured; a protocol, so this module,
    which the engine imports, imports nothing of the engine)."""

    status: str
    size: int
    bytes_copied: int
    header_bytes_read: int
    observation_end: datetime | None
    timings_ms: dict[str, float]


SERVICE = "lambda_ingest"
NAMESPACE = "LambdaIngest"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

# Stage names: metric "<Stage>Ms", tracer subsegment "## <stage>", OpenTSDB timer where ocs_ingester had one.
STAGE_METRICS = {"header_read": "HeaderReadMs", "md5": "Md5Ms", "copy": "CopyMs", "register": "RegisterMs"}
OPENTSDB_TIMERS = {
    "md5": "ingester.get_md5",
    "copy": "ingester.upload_file",
    "register": "ingester.post_frame",
}


@contextmanager
def quiet_engine(verbose: bool) -> Iterator[None]:
    """Keep stdout for a command's results while the engine works.

    The engine's structured log lines go to stderr (only with -v: the command line prints its own lines),
    and CloudWatch EMF blobs, which Powertools prints to stdout and which mean nothing outside Lambda, are
    dropped. (astropy's header fix-up warnings are silenced where records are built, under a lock that
    keeps it safe across replay's worker threads.)
    """
    handler = logger.registered_handler
    previous_stream = handler.setStream(sys.stderr)
    previous_level = logger.log_level
    logger.setLevel(logging.INFO if verbose else logging.CRITICAL)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        logger.setLevel(previous_level)
        handler.setStream(previous_stream)


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time one ingest step (milliseconds into `timings`) inside an X-Ray subsegment."""
    start = time.perf_counter()
    with tracer.provider.in_subsegment(f"## {name}"):
        try:
            yield
        finally:
            timings[name] = round((time.perf_counter() - start) * 1000, 3)


def ingest_lag_seconds(result: Measured, now: datetime | None = None) -> float | None:
    """Now minus the end of the observation, as ocs_ingester's `ingester.ingest_lag`."""
    end = result.observation_end
    if end is None:
        return None
    return ((now or datetime.now(UTC)) - end).total_seconds()


def emit_emf(result: Measured) -> None:
    """CloudWatch metrics (EMF) for one successful outcome; flushed by the handler's log_metrics."""
    if result.status == "ingested":
        metrics.add_metric(name="FilesIngested", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="BytesCopied", unit=MetricUnit.Bytes, value=result.bytes_copied)
    else:
        metrics.add_metric(name="FilesAlreadyIngested", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="HeaderBytesRead", unit=MetricUnit.Bytes, value=result.header_bytes_read)
    lag = ingest_lag_seconds(result)
    if lag is not None and result.status == "ingested":
        metrics.add_metric(name="IngestLagSeconds", unit=MetricUnit.Seconds, value=lag)
    for name, ms in result.timings_ms.items():
        if name in STAGE_METRICS:
            metrics.add_metric(name=STAGE_METRICS[name], unit=MetricUnit.Milliseconds, value=ms)


# Outcome kind -> metric. Rejections and system faults carry the reason class as a dimension of their own
# ({service, reason}), so the reason does not split the other metrics; the others have {service} only.
FAILURE_METRICS = {
    "rejected": "FilesRejected",
    "system_fault": "SystemFaults",
    "skipped": "FilesSkipped",
    "transient": "TransientFailures",
}
REASON_DIMENSION_METRICS = frozenset({"FilesRejected", "SystemFaults"})


def emit_failure_emf(kind: str, reason_class: str) -> None:
    """One count for an outcome other than success (`kind` is a key of FAILURE_METRICS)."""
    name = FAILURE_METRICS[kind]
    if name in REASON_DIMENSION_METRICS:
        with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as m:
            m.add_dimension(name="service", value=SERVICE)
            m.add_dimension(name="reason", value=reason_class)
    else:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


class OpenTSDBSink:
    """ocs_ingester's metrics to OpenTSDB's HTTP /api/put; a failure here never fails an ingest.

    Hand-written: ocs_ingester's opentsdb_python_metrics is not on the Lambda's dependency list and
    posts without a timeout; this is a few lines of JSON over HTTP with one.
    """

    TIMEOUT = (1.0, 2.0)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @staticmethod
    def enabled() -> bool:
        settings = get_settings()
        return bool(settings.opentsdb_hostname) and not settings.opentsdb_test_mode

    def record(self, result: Measured) -> None:
        if not self.enabled() or result.status != "ingested":
            return
        settings = get_settings()
        tags = {"ingester_process_name": settings.ingester_process_name}
        now = int(time.time())
        points = []
        for stage_name, metric in OPENTSDB_TIMERS.items():
            if stage_name in result.timings_ms:
                points.append({"metric": metric, "value": result.timings_ms[stage_name], "timestamp": now})
        copy_ms = result.timings_ms.get("copy")
        if copy_ms:
            rate = result.size / (copy_ms / 1000)
            points.append({"metric": "ingester.s3_upload_bytes_per_second", "value": rate, "timestamp": now})
        lag = ingest_lag_seconds(result)
        if lag is not None:
            points.append({"metric": "ingester.ingest_lag", "value": lag, "timestamp": now})
        for point in points:
            point["tags"] = tags
        if settings.submit_metrics_asynchronously:
            thread = threading.Thread(target=self._send, args=(points,), daemon=True)
            thread.start()
            with self._lock:
                self._threads.append(thread)
        else:
            self._send(points)

    def flush(self) -> None:
        """Wait for asynchronous sends (a frozen Lambda sandbox would otherwise drop them)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=sum(self.TIMEOUT) + 1)

    def _send(self, points: list[dict[str, Any]]) -> None:
        settings = get_settings()
        url = f"http://{settings.opentsdb_hostname}:{settings.opentsdb_port}/api/put"
        try:
            requests.post(url, data=json.dumps(points), timeout=self.TIMEOUT).close()
        except requests.RequestException as exc:
            logger.warning("OpenTSDB metrics not sent", extra={"error": type(exc).__name__})


opentsdb = OpenTSDBSink()
