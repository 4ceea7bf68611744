"""Names shared by the CDK app and its tests: one place to change a logical id, an output or a metric."""

from __future__ import annotations

# --- the CDK app -------------------------------------------------------------------------------------
DEFAULT_STACK_NAME = "LambdaIngest"
PROJECT_TAG = ("project", "lambda_ingest")

# Construct ids (the tests find resources through these).
STORAGE_ID = "Storage"
LANDING_BUCKET_ID = "LandingBucket"
ARCHIVE_BUCKET_ID = "ArchiveBucket"
ACCESS_LOGS_BUCKET_ID = "AccessLogsBucket"
QUEUEING_ID = "Queueing"
INGEST_QUEUE_ID = "IngestQueue"
DEAD_LETTER_QUEUE_ID = "DeadLetterQueue"
FUNCTION_CONSTRUCT_ID = "Ingest"
FUNCTION_ID = "Function"
TOKEN_SECRET_ID = "ArchiveToken"
IDEMPOTENCY_TABLE_ID = "IdempotencyTable"
MONITORING_ID = "Monitoring"
ALARM_TOPIC_ID = "AlarmTopic"
FUNCTION_ALIAS_NAME = "live"
EVENTS_ID = "Events"
EVENT_BUS_ID = "EventBus"
ARCHIVED_FRAMES_QUEUE_ID = "ArchivedFramesQueue"
AUDIT_ID = "Audit"
BATCH_OPERATIONS_ROLE_ID = "BatchOperationsRole"

# Stack outputs (CloudFormation output names).
OUTPUT_LANDING_BUCKET = "LandingBucketName"
OUTPUT_ARCHIVE_BUCKET = "ArchiveBucketName"
OUTPUT_INGEST_QUEUE_URL = "IngestQueueUrl"
OUTPUT_DLQ_URL = "DeadLetterQueueUrl"
OUTPUT_TOKEN_SECRET_ARN = "TokenSecretArn"
OUTPUT_FUNCTION_NAME = "FunctionName"
OUTPUT_ALARM_TOPIC_ARN = "AlarmTopicArn"
OUTPUT_DASHBOARD_NAME = "DashboardName"
OUTPUT_FUNCTION_ALIAS_ARN = "FunctionAliasArn"
OUTPUT_EVENT_BUS_NAME = "EventBusName"
OUTPUT_ARCHIVED_FRAMES_QUEUE_URL = "ArchivedFramesQueueUrl"
OUTPUT_AUDIT_FUNCTION_NAME = "AuditFunctionName"
OUTPUT_BATCH_OPERATIONS_ROLE_ARN = "BatchOperationsRoleArn"

# --- the function ------------------------------------------------------------------------------------
HANDLER = "lambda_ingest.handler.handler"
AUDIT_HANDLER = "lambda_ingest.audit.handler"
PACKAGE_NAME = "lambda_ingest"
# Dev-only parts of the package that never go into the bundle (nothing on the handler path imports them).
PACKAGE_EXCLUDES = ("local",)
# The Lambda Python minor version; the bundler builds wheels for exactly this one (see docs/deploy.md).
LAMBDA_PYTHON_VERSION = "3.13"
# Amazon Linux 2023 (every python3.12+ runtime) has glibc 2.34: any manylinux tag up to 2.34 runs there.
LAMBDA_GLIBC = (2, 34)
LAMBDA_MACHINE = "aarch64"
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024

# Powertools
POWERTOOLS_SERVICE_NAME = "lambda_ingest"
METRICS_NAMESPACE = "LambdaIngest"
# Powertools' idempotency layer defaults (its DynamoDBPersistenceLayer attribute names).
IDEMPOTENCY_KEY_ATTR = "id"
IDEMPOTENCY_TTL_ATTR = "expiration"

# Environment variables lambda_ingest/settings.py reads (names unchanged from ocs_ingester where shared).
ENV_API_ROOT = "API_ROOT"
ENV_BUCKET = "BUCKET"
ENV_LANDING_BUCKET = "LANDING_BUCKET"
ENV_EVENT_BUS_NAME = "EVENT_BUS_NAME"
ENV_TOKEN_SECRET_ARN = "AUTH_TOKEN_SECRET_ARN"
ENV_IDEMPOTENCY_TABLE = "IDEMPOTENCY_TABLE"
ENV_PROCESS_NAME = "INGESTER_PROCESS_NAME"
ENV_DAYS_TO_IA = "S3_DAYS_TO_IA_STORAGE"
ENV_KEEP_LANDING = "KEEP_LANDING_OBJECT"
ENV_HTTP_CONNECT_TIMEOUT = "HTTP_CONNECT_TIMEOUT"
ENV_HTTP_READ_TIMEOUT = "HTTP_READ_TIMEOUT"
ENV_COPY_CONCURRENCY = "COPY_CONCURRENCY"
ENV_OPENTSDB_HOSTNAME = "OPENTSDB_HOSTNAME"
ENV_SUBMIT_ASYNC = "SUBMIT_METRICS_ASYNCHRONOUSLY"
ENV_POWERTOOLS_SERVICE = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
ENV_POWERTOOLS_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
# Never set on the function: the token lives in Secrets Manager only.
FORBIDDEN_ENV = frozenset({"AUTH_TOKEN", "OBSERVATION_PORTAL_API_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})

# `archive_env` names and values: lambda_ingest.archive_env (shared with the function's own start-up check).
LAMBDA_ENV_LIMIT_BYTES = 4096  # Lambda's limit on the whole environment

# The tag the function puts on a rejected landing object (a lifecycle rule can only match key=value).
REJECTED_TAG_KEY = "ingest-status"
REJECTED_TAG_VALUE = "rejected"

# Metrics the function emits (namespace METRICS_NAMESPACE). All carry Powertools' `service` dimension only,
# except FilesRejected, which is emitted with {service, reason} (lambda_ingest/observability.py).
METRIC_DIMENSIONS = {"service": POWERTOOLS_SERVICE_NAME}
COUNT_METRICS = ("FilesIngested", "FilesAlreadyIngested", "TransientFailures")
BYTES_METRICS = ("BytesCopied", "HeaderBytesRead")
LAG_METRIC = "IngestLagSeconds"
DURATION_METRICS = ("HeaderReadMs", "Md5Ms", "CopyMs", "RegisterMs")
REJECTED_METRIC = "FilesRejected"
REJECTED_REASON_DIMENSION = "reason"
# Outcome metrics alarmed on whatever dimensions they carry (FilesRejected and SystemFaults by `reason`):
# the alarms use Metrics Insights queries over the whole namespace, so a dimension change cannot mute them.
SYSTEM_FAULT_METRIC = "SystemFaults"
SKIPPED_METRIC = "FilesSkipped"
AUDIT_METRIC = "AuditInconsistencies"
AUDIT_INCOMPLETE_METRIC = "AuditIncomplete"  # 1 when a scheduled run reached its time limit
EVENT_PUBLISH_FAILURES_METRIC = "EventPublishFailures"  # an outcome event EventBridge did not take
# The events the function publishes (docs/events.md) and the example rule's pattern.
EVENT_SOURCE = "lambda_ingest"
ARCHIVED_DETAIL_TYPE = "Frame Archived"
