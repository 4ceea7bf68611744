"""The stack's configuration: cdk context (`-c key=value` or `cdk.json`) read into one typed, validated object.

Values from `-c` arrive as strings, values from `cdk.json` as JSON types; both are accepted. Every key,
its default and its meaning is listed once, in `CONTEXT_KEYS` (docs/deploy.md has the same table).
Invalid values raise `ConfigError` naming the key, at synth time, before anything is deployed.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from infra import constants as c
from lambda_ingest import coerce
from lambda_ingest.archive_env import ARCHIVE_ENV_NAMES, is_archive_env_name, validate_archive_env
from lambda_ingest.errors import ConfigurationError

PLACEHOLDER_API_ROOT = "https://archive-api.example.invalid/"

# Timeout sizing (see `IngestConfig.function_timeout_seconds`): a conservative single-stream S3 read
# while hashing on a fraction of a vCPU, a server-side multipart copy, and a fixed allowance for the
# cold start, header reads and the archive POST.
MD5_STREAM_MIB_PER_S = 50
SERVER_COPY_MIB_PER_S = 200
FIXED_ALLOWANCE_S = 60
# The handler's time budget: it starts a record only while the remaining time exceeds its safety margin
# plus an estimate for that record, and reports the records it did not start as batch item failures.
# The timeout must therefore hold the margin, one record of the largest expected size, and the rest of a
# full batch of ordinary frames, or records are pushed back (and count towards the DLQ) on every receive.
# Both equal the handler's own constants (SAFETY_MARGIN_MS, PER_RECORD_MS in lambda_ingest/handler.py;
# tests/infra/test_infra_config.py compares them), and `largest_record_seconds` is never below the
# handler's estimate for that size, so the largest object is always started by a fresh invocation.
HANDLER_MARGIN_S = 10
ORDINARY_RECORD_S = 3  # an ordinary frame: header reads, a server-side copy, the archive POST, the delete
LAMBDA_MAX_TIMEOUT_S = 900
SQS_MAX_VISIBILITY_S = 12 * 3600

LOG_RETENTION_DAYS = (
    *(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653),
)
# Context keys that would put a credential into the template: refused outright.
FORBIDDEN_CONTEXT_KEYS = ("auth_token", "token", "api_token", "AUTH_TOKEN", "archive_token")

# A project key is plain snake_case; CDK's own keys (`@aws-cdk/...` flags, `aws:cdk:...`, lookups with
# `:`/`=`, `cdk-...`) never are, so only plain keys are checked against CONTEXT_KEYS.
PROJECT_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\([^()]+\))$")
EVENT_BUS_NAME = re.compile(r"^[A-Za-z0-9._-]{1,256}$")

SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ConfigError(ValueError):
    """A context value is missing, malformed or inconsistent; the message names the key."""


@dataclass(frozen=True)
class ContextKey:
    name: str
    default: Any
    help: str


CONTEXT_KEYS: tuple[ContextKey, ...] = (
    ContextKey("stack_name", c.DEFAULT_STACK_NAME, "CloudFormation stack name"),
    ContextKey("api_root", PLACEHOLDER_API_ROOT, "Science Archive API root (API_ROOT); synth warns on the placeholder"),
    ContextKey("landing_bucket_name", None, "name for a new landing bucket (default: generated)"),
    ContextKey("existing_landing_bucket", None, "import this existing landing bucket instead of creating one"),
    ContextKey("archive_bucket_name", None, "name for a new archive bucket (default: generated)"),
    ContextKey("existing_archive_bucket", None, "import this existing (versioned) archive bucket"),
    ContextKey("token_secret_arn", None, "complete ARN of an existing archive-token secret (default: create one)"),
    ContextKey("landing_prefix", "", "only keys under this prefix notify the queue"),
    ContextKey("landing_suffixes", [], "only keys ending in one of these notify (list or comma-separated)"),
    ContextKey("abort_multipart_days", 7, "abort incomplete multipart uploads on the landing bucket after N days"),
    ContextKey("rejected_expiry_days", 0, "expire landing objects tagged rejected after N days; 0 = never (default)"),
    ContextKey("days_to_ia", 60, "archive objects move to STANDARD_IA after N days (>= 30; S3_DAYS_TO_IA_STORAGE)"),
    ContextKey("access_log_days", 365, "S3 server access logs of the created buckets are kept N days"),
    ContextKey("batch_size", 10, "SQS records per invocation (1-10000)"),
    ContextKey("batching_window_seconds", 5, "wait up to N s to fill a batch (0-300; >= 1 when batch_size > 10)"),
    ContextKey("max_concurrency", 5, "most concurrent invocations (2-1000): protects the archive API"),
    ContextKey("max_receive_count", 5, "receives before a message moves to the dead-letter queue"),
    ContextKey("memory_mb", 1024, "function memory (header reads are bounded; memory buys CPU for md5)"),
    ContextKey("max_object_gib", 8, "largest expected multipart object; sizes the timeout"),
    ContextKey("function_timeout_seconds", None, "override the timeout derived from max_object_gib (<= 900)"),
    ContextKey("process_name", "lambda_ingest", "INGESTER_PROCESS_NAME (metrics label)"),
    ContextKey("log_level", "INFO", "POWERTOOLS_LOG_LEVEL"),
    ContextKey("log_retention_days", 90, "function log retention (a CloudWatch Logs retention value)"),
    ContextKey("keep_landing_object", False, "KEEP_LANDING_OBJECT: keep landing objects after ingest"),
    ContextKey("copy_concurrency", 8, "COPY_CONCURRENCY: parallel part copies above 5 GiB"),
    ContextKey("http_connect_timeout", 5, "HTTP_CONNECT_TIMEOUT (s) for the archive API"),
    ContextKey("http_read_timeout", 30, "HTTP_READ_TIMEOUT (s) for the archive API"),
    ContextKey("opentsdb_hostname", None, "OPENTSDB_HOSTNAME: also send ocs_ingester-style metrics there"),
    ContextKey("submit_metrics_asynchronously", False, "SUBMIT_METRICS_ASYNCHRONOUSLY (OpenTSDB)"),
    ContextKey("archive_env", {}, "JSON object of ocs_archive header-mapping variables passed to the function"),
    ContextKey("alarm_email", None, "subscribe this address to the alarm topic"),
    ContextKey("oldest_message_alarm_minutes", 60, "alarm when the oldest ingest message is older than N min"),
    ContextKey("rejected_alarm_threshold", 10, "alarm when more than N files are rejected in 5 minutes"),
    ContextKey("system_fault_alarm_threshold", 0, "alarm when more than N system faults occur in 5 minutes"),
    ContextKey("skipped_alarm_threshold", 10, "alarm when more than N objects are skipped in 5 minutes"),
    ContextKey("snapstart", True, "Lambda SnapStart on published versions; the queue invokes the 'live' alias"),
    ContextKey("event_bus", "create", "outcome events: 'create' a bus, the account's 'default' bus, a name, 'none'"),
    ContextKey("archived_frames_queue", False, "example rule: 'Frame Archived' events -> a new SQS queue"),
    ContextKey("audit_schedule", None, "run the audit on this EventBridge schedule, e.g. 'rate(1 day)'"),
    ContextKey("batch_operations_prefix", "batch-operations/", "landing prefix for Batch Operations manifests/reports"),
    ContextKey("bundling", "pip", "'pip': real bundle with dependencies; 'source': package only (tests)"),
    ContextKey("bundle_pin_versions", True, "pin bundled dependencies to the versions in the running venv"),
    ContextKey("nag", True, "run cdk-nag AwsSolutions checks during synth"),
)
_DEFAULTS = {k.name: k.default for k in CONTEXT_KEYS}


@dataclass(frozen=True)
class IngestConfig:
    stack_name: str = c.DEFAULT_STACK_NAME
    api_root: str = PLACEHOLDER_API_ROOT
    landing_bucket_name: str | None = None
    existing_landing_bucket: str | None = None
    archive_bucket_name: str | None = None
    existing_archive_bucket: str | None = None
    token_secret_arn: str | None = None
    landing_prefix: str = ""
    landing_suffixes: tuple[str, ...] = ()
    abort_multipart_days: int = 7
    rejected_expiry_days: int = 0
    days_to_ia: int = 60
    access_log_days: int = 365
    batch_size: int = 10
    batching_window_seconds: int = 5
    max_concurrency: int = 5
    max_receive_count: int = 5
    memory_mb: int = 1024
    max_object_gib: float = 8
    timeout_override: int | None = None
    process_name: str = "lambda_ingest"
    log_level: str = "INFO"
    log_retention_days: int = 90
    keep_landing_object: bool = False
    copy_concurrency: int = 8
    http_connect_timeout: float = 5
    http_read_timeout: float = 30
    opentsdb_hostname: str | None = None
    submit_metrics_asynchronously: bool = False
    archive_env: Mapping[str, str] = field(default_factory=dict)
    alarm_email: str | None = None
    oldest_message_alarm_minutes: int = 60
    rejected_alarm_threshold: int = 10
    system_fault_alarm_threshold: int = 0
    skipped_alarm_threshold: int = 10
    snapstart: bool = True
    event_bus: str = "create"
    archived_frames_queue: bool = False
    audit_schedule: str | None = None
    batch_operations_prefix: str = "batch-operations/"
    bundling: str = "pip"
    bundle_pin_versions: bool = True
    nag: bool = True

    @property
    def largest_record_seconds(self) -> int:
        """md5-stream and multipart-copy the largest expected object, plus a fixed allowance."""
        mib = self.max_object_gib * 1024
        return math.ceil(FIXED_ALLOWANCE_S + mib / MD5_STREAM_MIB_PER_S + mib / SERVER_COPY_MIB_PER_S)

    @property
    def required_timeout_seconds(self) -> int:
        """The time budget rule (docs/deploy.md): margin + largest record + the rest of a batch of ordinary ones."""
        return HANDLER_MARGIN_S + self.largest_record_seconds + (self.batch_size - 1) * ORDINARY_RECORD_S

    @property
    def function_timeout_seconds(self) -> int:
        return self.timeout_override if self.timeout_override is not None else self.required_timeout_seconds

    @property
    def event_bus_name(self) -> str | None:
        """EVENT_BUS_NAME for the function; None when publishing is off ('create' is resolved by the stack)."""
        return None if self.event_bus == "none" else self.event_bus

    @property
    def visibility_timeout_seconds(self) -> int:
        # AWS's guidance for SQS event sources: six times the function timeout plus the batching window,
        # so a message is not redelivered while a slow invocation still holds it.
        return 6 * self.function_timeout_seconds + self.batching_window_seconds

    @property
    def placeholder_api_root(self) -> bool:
        return self.api_root == PLACEHOLDER_API_ROOT

    def function_environment(
        self,
        *,
        archive_bucket: str,
        secret_arn: str,
        table_name: str,
        landing_bucket: str,
        event_bus_name: str | None = None,
    ) -> dict[str, str]:
        """The function's environment: settings.py's variables, Powertools', and the ocs_archive pass-through."""
        env = {
            c.ENV_API_ROOT: self.api_root,
            c.ENV_BUCKET: archive_bucket,
            c.ENV_LANDING_BUCKET: landing_bucket,
            c.ENV_TOKEN_SECRET_ARN: secret_arn,
            c.ENV_IDEMPOTENCY_TABLE: table_name,
            c.ENV_PROCESS_NAME: self.process_name,
            c.ENV_DAYS_TO_IA: str(self.days_to_ia),
            c.ENV_KEEP_LANDING: "true" if self.keep_landing_object else "false",
            c.ENV_HTTP_CONNECT_TIMEOUT: _num(self.http_connect_timeout),
            c.ENV_HTTP_READ_TIMEOUT: _num(self.http_read_timeout),
            c.ENV_COPY_CONCURRENCY: str(self.copy_concurrency),
            c.ENV_SUBMIT_ASYNC: "True" if self.submit_metrics_asynchronously else "False",
            c.ENV_POWERTOOLS_SERVICE: c.POWERTOOLS_SERVICE_NAME,
            c.ENV_POWERTOOLS_NAMESPACE: c.METRICS_NAMESPACE,
            c.ENV_POWERTOOLS_LOG_LEVEL: self.log_level,
        }
        if self.opentsdb_hostname:
            env[c.ENV_OPENTSDB_HOSTNAME] = self.opentsdb_hostname
        if event_bus_name:
            env[c.ENV_EVENT_BUS_NAME] = event_bus_name
        env.update(self.archive_env)
        return env


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --- coercion: strings from `-c`, JSON types from cdk.json -----------------------------------------------
def _str(key: str, value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"context {key!r} must be a string, got {value!r}")
    return str(value).strip()


def _opt_str(key: str, value: Any) -> str | None:
    if value is None:
        return None
    text = _str(key, value)
    return text or None


@contextmanager
def _context_value() -> Iterator[None]:
    # lambda_ingest.coerce raises the function's ConfigurationError; synth reports a ConfigError.
    try:
        yield
    except ConfigurationError as exc:
        raise ConfigError(str(exc)) from None


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    with _context_value():
        return coerce.to_int(value, f"context {key!r}", lo, hi)


def _float(key: str, value: Any, lo: float, hi: float) -> float:
    with _context_value():
        return coerce.to_float(value, f"context {key!r}", lo, hi)


def _bool(key: str, value: Any) -> bool:
    with _context_value():
        return coerce.to_bool(value, f"context {key!r}")


def _list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"context {key!r} is not a JSON list: {exc}") from None
        else:
            return tuple(part.strip() for part in text.split(",") if part.strip())
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"context {key!r} must be a list of strings, got {value!r}")
    return tuple(v.strip() for v in value if v.strip())


def _choice(key: str, value: Any, choices: tuple[str, ...], upper: bool = False) -> str:
    text = _str(key, value)
    text = text.upper() if upper else text.lower()
    if text not in choices:
        raise ConfigError(f"context {key!r} must be one of {', '.join(choices)}, got {value!r}")
    return text


def _event_bus(value: Any) -> str:
    text = _str("event_bus", value)
    if text.lower() in {"create", "default", "none"}:
        return text.lower()
    if not EVENT_BUS_NAME.match(text):
        raise ConfigError(f"context 'event_bus' must be create, default, none or an event bus name, got {value!r}")
    return text


def _schedule(value: Any) -> str | None:
    text = _opt_str("audit_schedule", value)
    if text is not None and not SCHEDULE.match(text):
        raise ConfigError(
            f"context 'audit_schedule' must be an EventBridge schedule such as 'rate(1 day)' or "
            f"'cron(0 6 * * ? *)', got {value!r}"
        )
    return text


def _prefix(key: str, value: Any) -> str:
    text = _str(key, value)
    if not text or text.startswith("/") or "*" in text:
        raise ConfigError(f"context {key!r} must be a key prefix such as 'batch-operations/', got {value!r}")
    return text if text.endswith("/") else text + "/"


def _bucket(key: str, value: Any) -> str | None:
    name = _opt_str(key, value)
    if name is not None and not BUCKET_NAME.match(name):
        raise ConfigError(f"context {key!r} is not a valid S3 bucket name: {name!r}")
    return name


def archive_env_from(value: Any) -> dict[str, str]:
    """Validate the ocs_archive pass-through: only ocs_archive's own names, with values ocs_archive accepts."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"context 'archive_env' must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"context 'archive_env' must be a JSON object, got {value!r}")
    env: dict[str, str] = {}
    for name, raw in value.items():
        if not is_archive_env_name(name):
            allowed = ", ".join(sorted(ARCHIVE_ENV_NAMES))
            raise ConfigError(
                f"context 'archive_env' may only set ocs_archive's variables ({allowed}, "
                f"or a *_KEY name); {name!r} is not one"
            )
        # ocs_archive reads lists as comma-separated text and FILETYPE_MAPPING_OVERRIDES as a literal dict.
        if isinstance(raw, list):
            env[name] = ",".join(str(v) for v in raw)
        elif isinstance(raw, dict):
            env[name] = repr({str(k): str(v) for k, v in raw.items()})
        elif isinstance(raw, str | int | float) and not isinstance(raw, bool):
            env[name] = str(raw)
        else:
            raise ConfigError(f"context 'archive_env' value of {name!r} must be text, a number or a list")
    try:
        # The same check the function runs at start: a value it would refuse never reaches a deploy.
        validate_archive_env(env)
    except ConfigurationError as exc:
        raise ConfigError(f"context 'archive_env': {exc}") from None
    return env


def check_known_keys(keys: Iterable[str]) -> None:
    """Refuse a plain key the project does not define, suggesting the closest known one."""
    known = [k.name for k in CONTEXT_KEYS]
    for key in sorted(keys):
        if PROJECT_KEY.match(key) and key not in known and key not in FORBIDDEN_CONTEXT_KEYS:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "docs/deploy.md lists every key"
            raise ConfigError(f"unknown context key {key!r}: {hint}")


Getter = Callable[[str], Any]


def load_config(context: Mapping[str, Any] | Getter) -> IngestConfig:
    """Build the config from a context mapping (tests) or a `node.try_get_context`-style getter (the app)."""
    get: Getter = context.get if isinstance(context, Mapping) else context
    if isinstance(context, Mapping):
        check_known_keys(context)

    for key in FORBIDDEN_CONTEXT_KEYS:
        if get(key) is not None:
            raise ConfigError(
                f"context {key!r}: the archive token is never passed through cdk context (it would be in the "
                "template); store it in the stack's secret (docs/deploy.md, 'Set the token')"
            )

    def value(key: str) -> Any:
        raw = get(key)
        return _DEFAULTS[key] if raw is None else raw

    api_root = _str("api_root", value("api_root"))
    if not api_root.startswith(("https://", "http://")):
        raise ConfigError(f"context 'api_root' must be an http(s) URL, got {api_root!r}")

    token_secret_arn = _opt_str("token_secret_arn", value("token_secret_arn"))
    if token_secret_arn is not None and not SECRET_ARN.match(token_secret_arn):
        raise ConfigError(f"context 'token_secret_arn' is not a Secrets Manager secret ARN: {token_secret_arn!r}")

    timeout_raw = value("function_timeout_seconds")
    config = IngestConfig(
        stack_name=_str("stack_name", value("stack_name")),
        api_root=api_root,
        landing_bucket_name=_bucket("landing_bucket_name", value("landing_bucket_name")),
        existing_landing_bucket=_bucket("existing_landing_bucket", value("existing_landing_bucket")),
        archive_bucket_name=_bucket("archive_bucket_name", value("archive_bucket_name")),
        existing_archive_bucket=_bucket("existing_archive_bucket", value("existing_archive_bucket")),
        token_secret_arn=token_secret_arn,
        landing_prefix=_str("landing_prefix", value("landing_prefix")),
        landing_suffixes=_list("landing_suffixes", value("landing_suffixes")),
        abort_multipart_days=_int("abort_multipart_days", value("abort_multipart_days"), 1, 365),
        rejected_expiry_days=_int("rejected_expiry_days", value("rejected_expiry_days"), 0, 3650),
        # S3 refuses a STANDARD_IA transition earlier than 30 days.
        days_to_ia=_int("days_to_ia", value("days_to_ia"), 30, 36500),
        access_log_days=_int("access_log_days", value("access_log_days"), 1, 3650),
        batch_size=_int("batch_size", value("batch_size"), 1, 10000),
        batching_window_seconds=_int("batching_window_seconds", value("batching_window_seconds"), 0, 300),
        max_concurrency=_int("max_concurrency", value("max_concurrency"), 2, 1000),
        max_receive_count=_int("max_receive_count", value("max_receive_count"), 1, 1000),
        memory_mb=_int("memory_mb", value("memory_mb"), 256, 10240),
        max_object_gib=_float("max_object_gib", value("max_object_gib"), 0.001, 5 * 1024),
        timeout_override=None
        if timeout_raw is None
        else _int("function_timeout_seconds", timeout_raw, 30, LAMBDA_MAX_TIMEOUT_S),
        process_name=_str("process_name", value("process_name")),
        log_level=_choice("log_level", value("log_level"), ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True),
        log_retention_days=_int("log_retention_days", value("log_retention_days"), 1, 3653),
        keep_landing_object=_bool("keep_landing_object", value("keep_landing_object")),
        copy_concurrency=_int("copy_concurrency", value("copy_concurrency"), 1, 64),
        http_connect_timeout=_float("http_connect_timeout", value("http_connect_timeout"), 0.1, 600),
        http_read_timeout=_float("http_read_timeout", value("http_read_timeout"), 0.1, 900),
        opentsdb_hostname=_opt_str("opentsdb_hostname", value("opentsdb_hostname")),
        submit_metrics_asynchronously=_bool("submit_metrics_asynchronously", value("submit_metrics_asynchronously")),
        archive_env=archive_env_from(value("archive_env")),
        alarm_email=_opt_str("alarm_email", value("alarm_email")),
        oldest_message_alarm_minutes=_int(
            "oldest_message_alarm_minutes", value("oldest_message_alarm_minutes"), 1, 20160
        ),
        rejected_alarm_threshold=_int("rejected_alarm_threshold", value("rejected_alarm_threshold"), 0, 1_000_000),
        system_fault_alarm_threshold=_int(
            "system_fault_alarm_threshold", value("system_fault_alarm_threshold"), 0, 1_000_000
        ),
        skipped_alarm_threshold=_int("skipped_alarm_threshold", value("skipped_alarm_threshold"), 0, 1_000_000),
        snapstart=_bool("snapstart", value("snapstart")),
        event_bus=_event_bus(value("event_bus")),
        archived_frames_queue=_bool("archived_frames_queue", value("archived_frames_queue")),
        audit_schedule=_schedule(value("audit_schedule")),
        batch_operations_prefix=_prefix("batch_operations_prefix", value("batch_operations_prefix")),
        bundling=_choice("bundling", value("bundling"), ("pip", "source")),
        bundle_pin_versions=_bool("bundle_pin_versions", value("bundle_pin_versions")),
        nag=_bool("nag", value("nag")),
    )
    _check_consistency(config)
    return config


def _check_consistency(config: IngestConfig) -> None:
    if config.landing_bucket_name and config.existing_landing_bucket:
        raise ConfigError("set either 'landing_bucket_name' (create) or 'existing_landing_bucket' (import), not both")
    if config.archive_bucket_name and config.existing_archive_bucket:
        raise ConfigError("set either 'archive_bucket_name' (create) or 'existing_archive_bucket' (import), not both")
    landing = config.landing_bucket_name or config.existing_landing_bucket
    archive = config.archive_bucket_name or config.existing_archive_bucket
    if landing and landing == archive:
        raise ConfigError("the landing and archive buckets must differ (the archive must never hold uploads)")
    if config.batch_size > 10 and config.batching_window_seconds < 1:
        raise ConfigError("'batching_window_seconds' must be at least 1 when 'batch_size' is over 10 (SQS rule)")
    if config.log_retention_days not in LOG_RETENTION_DAYS:
        raise ConfigError(
            f"context 'log_retention_days' must be one of {LOG_RETENTION_DAYS}, got {config.log_retention_days}"
        )
    required = config.required_timeout_seconds
    budget = (
        f"{HANDLER_MARGIN_S} s margin + {config.largest_record_seconds} s for one {config.max_object_gib:g} GiB "
        f"object + {config.batch_size - 1} x {ORDINARY_RECORD_S} s for the rest of the batch = {required} s"
    )
    if config.timeout_override is None and required > LAMBDA_MAX_TIMEOUT_S:
        raise ConfigError(
            f"'max_object_gib' {config.max_object_gib:g} with 'batch_size' {config.batch_size} needs a "
            f"{required} s timeout ({budget}), over Lambda's {LAMBDA_MAX_TIMEOUT_S} s: lower either one"
        )
    if config.timeout_override is not None and config.timeout_override < required:
        raise ConfigError(
            f"'function_timeout_seconds' {config.timeout_override} is below what 'batch_size' {config.batch_size} "
            f"and 'max_object_gib' {config.max_object_gib:g} need ({budget}): raise it or lower those"
        )
    if config.visibility_timeout_seconds > SQS_MAX_VISIBILITY_S:
        raise ConfigError("the derived queue visibility timeout exceeds SQS's 12 hours")
    suffixes = config.landing_suffixes
    overlaps = [(a, b) for i, a in enumerate(suffixes) for b in suffixes[i + 1 :] if a.endswith(b) or b.endswith(a)]
    if overlaps:  # S3 refuses two notifications for the same event whose suffixes overlap
        raise ConfigError(f"'landing_suffixes' overlap: {overlaps[0][0]!r} and {overlaps[0][1]!r}; keep the shorter")
    if config.alarm_email and "@" not in config.alarm_email:
        raise ConfigError(f"context 'alarm_email' is not an e-mail address: {config.alarm_email!r}")
    reserved = [n for n in config.archive_env if n in c.FORBIDDEN_ENV or n.startswith(("AWS_", "LAMBDA_"))]
    if reserved:  # e.g. AWS_SECRET_ACCESS_KEY matches the *_KEY rule but is a credential / reserved by Lambda
        raise ConfigError(f"'archive_env' may not set {sorted(reserved)}: credentials and AWS_/LAMBDA_ names")
    # Lambda caps the whole environment at 4 KB; measure it with the longest plausible resource names.
    env = config.function_environment(
        archive_bucket="b" * 63,
        secret_arn="a" * 200,
        table_name="t" * 255,
        landing_bucket="l" * 63,
        event_bus_name="e" * 256,
    )
    size = sum(len(k) + len(v) for k, v in env.items())
    if size > c.LAMBDA_ENV_LIMIT_BYTES:
        raise ConfigError(f"the function environment would be {size} bytes, over Lambda's 4 KB: trim 'archive_env'")
