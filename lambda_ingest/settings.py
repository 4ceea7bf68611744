"""Every environment variable lambda_ingest reads, validated once.

Nothing else in the package reads `os.environ`. ocs_archive's own header-mapping variables
(`REQUIRED_HEADERS`, `OBSTYPE`-style `*_KEY` names, `FILETYPE_MAPPING_OVERRIDES`, ...) are read by
ocs_archive itself, unchanged, from the same environment; `ocs_archive_settings()` exposes them.
ocs_ingester's variables keep their names and meaning (API_ROOT, AUTH_TOKEN, BUCKET, S3_ENDPOINT_URL,
OPENTSDB_*, INGESTER_PROCESS_NAME, SUBMIT_METRICS_ASYNCHRONOUSLY).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from types import ModuleType
from typing import Any

from lambda_ingest.archive_env import validate_archive_env
from lambda_ingest.coerce import to_bool, to_float, to_int
from lambda_ingest.errors import ConfigurationError
from lambda_ingest.fits_header import HeaderLimits

FILESTORE_TYPES = ("s3", "local", "dummy")  # ocs_archive's FileStoreFactory
MAX_COPY_CONCURRENCY = 64  # the S3 client's pool is sized from it; more threads only contend


def _text(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    value = env.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = _text(env, name, None)
    return default if raw is None else to_int(raw, name, minimum, maximum)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _text(env, name, None)
    if raw is None:
        return default
    value = to_float(raw, name)
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _text(env, name, None)
    if raw is None:
        return default
    try:
        return to_bool(raw, name)
    except ConfigurationError:
        # ocs_ingester parses SUBMIT_METRICS_ASYNCHRONOUSLY with literal_eval ("True"/"False", but also "2").
        try:
            return bool(ast.literal_eval(raw))
        except (ValueError, SyntaxError):
            raise ConfigurationError(f"{name} must be true or false, got {raw!r}") from None


# The level names Powertools' Logger accepts (it upper-cases the value); it reads POWERTOOLS_LOG_LEVEL itself,
# at import, and an unknown name would surface as a bare ValueError from `logging`.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _check_log_level(env: Mapping[str, str]) -> None:
    raw = (env.get("POWERTOOLS_LOG_LEVEL") or "").strip()
    if raw and raw.upper() not in {*LOG_LEVELS, "WARN", "FATAL"} and not raw.isdigit():
        raise ConfigurationError(f"POWERTOOLS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    # Science Archive (ocs_ingester names)
    api_root: str = "http://127.0.0.1:8000/"
    auth_token: str = field(default="", repr=False)
    auth_token_secret_arn: str | None = None
    # Archive bucket (ocs_ingester/ocs_archive name BUCKET) and S3
    bucket: str = "testbucket"
    s3_endpoint_url: str | None = None
    aws_region: str | None = None
    s3_days_to_ia_storage: int = 60
    # Where the Python API and `lambda-ingest ingest` store files (ocs_archive's FileStoreFactory names;
    # the Lambda always copies S3 to S3). ocs_archive's own default is "dummy", which stores nothing.
    filestore_type: str = "s3"
    filesystem_storage_root_dir: str | None = None
    # Archive API timeouts (seconds); S3's are clients.py's constants
    http_connect_timeout: float = 5.0
    http_read_timeout: float = 30.0
    # Parallel part copies above store.COPY_MULTIPART_THRESHOLD
    copy_concurrency: int = 16
    keep_landing_object: bool = False
    # Header reading limits (a hostile file must not exhaust memory or time)
    # (defaults are fits_header.HeaderLimits'; the operator's remedy when a rejection names one)
    header_max_bytes: int = HeaderLimits.max_bytes
    header_max_cards: int = HeaderLimits.max_cards
    header_max_hdus: int = HeaderLimits.max_hdus
    tar_max_scan_bytes: int = HeaderLimits.tar_max_scan_bytes
    # Handler
    idempotency_table: str | None = None
    # A window of hours, not days: a re-upload of the same bytes later is a new upload and must be processed
    # (it ends already_ingested and its landing object is removed); redeliveries come within minutes.
    idempotency_expiry_seconds: int = 2 * 3600
    # Outcome events (EventBridge; unset = none published) and the audit's landing bucket
    event_bus_name: str | None = None
    landing_bucket: str | None = None
    # Metrics (ocs_ingester names)
    opentsdb_hostname: str | None = None
    opentsdb_port: int = 4242
    opentsdb_test_mode: bool = False
    ingester_process_name: str = "ingester"
    submit_metrics_asynchronously: bool = False

    @property
    def archive_api_root(self) -> str:
        """API_ROOT normalised to end with one slash (the archive answers 301 to `frames`)."""
        return self.api_root.rstrip("/") + "/"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment; raise ConfigurationError naming the bad variable."""
    env = os.environ if env is None else env
    _check_log_level(env)
    api_root = _text(env, "API_ROOT", Settings.api_root)
    if not api_root.startswith(("http://", "https://")):
        raise ConfigurationError(f"API_ROOT must be an http(s) URL, got {api_root!r}")
    filestore_type = _text(env, "FILESTORE_TYPE", Settings.filestore_type)
    if filestore_type not in FILESTORE_TYPES:
        raise ConfigurationError(f"FILESTORE_TYPE must be one of {', '.join(FILESTORE_TYPES)}, got {filestore_type!r}")
    root_dir = _text(env, "FILESYSTEM_STORAGE_ROOT_DIR", None)
    if filestore_type == "local" and root_dir is None:
        # ocs_archive would write under the current directory: almost surely not where the archive serves from.
        raise ConfigurationError("FILESTORE_TYPE=local needs FILESYSTEM_STORAGE_ROOT_DIR (the store's root directory)")
    settings = Settings(
        api_root=api_root,
        auth_token=_text(env, "AUTH_TOKEN", "") or "",
        auth_token_secret_arn=_text(env, "AUTH_TOKEN_SECRET_ARN", None),
        bucket=_text(env, "BUCKET", Settings.bucket),
        s3_endpoint_url=_text(env, "S3_ENDPOINT_URL", None),
        aws_region=_text(env, "AWS_REGION", None) or _text(env, "AWS_DEFAULT_REGION", None),
        s3_days_to_ia_storage=_int(env, "S3_DAYS_TO_IA_STORAGE", Settings.s3_days_to_ia_storage),
        filestore_type=filestore_type,
        filesystem_storage_root_dir=root_dir,
        http_connect_timeout=_float(env, "HTTP_CONNECT_TIMEOUT", Settings.http_connect_timeout),
        http_read_timeout=_float(env, "HTTP_READ_TIMEOUT", Settings.http_read_timeout),
        copy_concurrency=_int(
            env, "COPY_CONCURRENCY", Settings.copy_concurrency, minimum=1, maximum=MAX_COPY_CONCURRENCY
        ),
        keep_landing_object=_bool(env, "KEEP_LANDING_OBJECT", Settings.keep_landing_object),
        header_max_bytes=_int(env, "HEADER_MAX_BYTES", Settings.header_max_bytes, minimum=2880),
        header_max_cards=_int(env, "HEADER_MAX_CARDS", Settings.header_max_cards, minimum=36),
        header_max_hdus=_int(env, "HEADER_MAX_HDUS", Settings.header_max_hdus, minimum=1),
        tar_max_scan_bytes=_int(env, "TAR_MAX_SCAN_BYTES", Settings.tar_max_scan_bytes, minimum=2880),
        idempotency_table=_text(env, "IDEMPOTENCY_TABLE", None),
        idempotency_expiry_seconds=_int(
            env, "IDEMPOTENCY_EXPIRY_SECONDS", Settings.idempotency_expiry_seconds, minimum=60
        ),
        event_bus_name=_text(env, "EVENT_BUS_NAME", None),
        landing_bucket=_text(env, "LANDING_BUCKET", None),
        opentsdb_hostname=_text(env, "OPENTSDB_HOSTNAME", None),
        opentsdb_port=_int(env, "OPENTSDB_PORT", Settings.opentsdb_port, minimum=1),
        opentsdb_test_mode=_bool(env, "OPENTSDB_PYTHON_METRICS_TEST_MODE", False),
        ingester_process_name=_text(env, "INGESTER_PROCESS_NAME", Settings.ingester_process_name),
        submit_metrics_asynchronously=_bool(env, "SUBMIT_METRICS_ASYNCHRONOUSLY", False),
    )
    # ocs_archive reads its own variables at import with bare int()/literal_eval(): check them here, once,
    # so a bad value is a ConfigurationError naming the variable instead of a ValueError on every file.
    validate_archive_env(env)
    return settings


_overrides: dict[str, Any] = {}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (so tests can set the environment first)."""
    return load_settings().with_overrides(**_overrides)


def override_settings(**changes: Any) -> Settings:
    """Command-line flags win over the environment (None leaves a setting as it is)."""
    _overrides.update({k: v for k, v in changes.items() if v is not None})
    reset_settings(keep_overrides=True)
    return get_settings()


# Caches built from the settings (clients.py's boto3 clients, ...) register here to be forgotten with them;
# a callback keeps settings.py at the bottom of the import graph (it imports none of its users).
_on_reset: list[Callable[[], None]] = []


def on_reset(callback: Callable[[], None]) -> None:
    """Call `callback` whenever the settings are forgotten (a cache derived from them)."""
    _on_reset.append(callback)


def reset_settings(keep_overrides: bool = False) -> None:
    """Forget cached settings and what was built from them (tests and the CLI call this after changing env)."""
    if not keep_overrides:
        _overrides.clear()
    get_settings.cache_clear()
    for callback in _on_reset:
        callback()


def ocs_archive_settings() -> ModuleType:
    """ocs_archive's settings module (REQUIRED_HEADERS, *_KEY names, ...), read by ocs_archive at import."""
    from ocs_archive.settings import settings as archive_settings

    return archive_settings
