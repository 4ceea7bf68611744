"""lambda_ingest: serverless ingester for the OCS Science Archive.

ocs_ingester's API and its four exception classes are importable from here (`import lambda_ingest as
ingester`, `from lambda_ingest import DoNotRetryError, ...`); see `lambda_ingest.compat`. The names
resolve lazily so the Lambda handler's cold start does not pay for them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "frame_exists": "lambda_ingest.compat",
    "validate_fits_and_create_archive_record": "lambda_ingest.compat",
    "upload_file_to_file_store": "lambda_ingest.compat",
    "ingest_archive_record": "lambda_ingest.compat",
    "upload_file_and_ingest_to_archive": "lambda_ingest.compat",
    "ingest_object": "lambda_ingest.ingest",
    "IngestResult": "lambda_ingest.ingest",
    "DoNotRetryError": "lambda_ingest.errors",
    "BackoffRetryError": "lambda_ingest.errors",
    "NonFatalDoNotRetryError": "lambda_ingest.errors",
    "RetryError": "lambda_ingest.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lambda_ingest' has no attribute {name!r}")
