"""The synthesised stack, property by property (issue 4), plus cdk-nag, for the default and imported variants."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from infra import constants as c
from infra.config import HANDLER_MARGIN_S, MD5_STREAM_MIB_PER_S, ORDINARY_RECORD_S

assertions = pytest.importorskip("aws_cdk.assertions", reason="the CDK tests need the project's `infra` extra")
Match = assertions.Match

pytestmark = pytest.mark.infra

NAG_RULE = Match.string_like_regexp("AwsSolutions-.*")


# --- helpers -------------------------------------------------------------------------------------------
def logical_id(synth: Any, construct: Any) -> str:
    return synth.stack.get_logical_id(construct.node.default_child)


def function_resource(synth: Any) -> dict[str, Any]:
    fns = [f for f in synth.resources("AWS::Lambda::Function").values() if f["Properties"].get("Handler") == c.HANDLER]
    assert len(fns) == 1
    return fns[0]


def function_role_statements(synth: Any) -> list[dict[str, Any]]:
    role_id = function_resource(synth)["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def actions(statement: dict[str, Any]) -> set[str]:
    value = statement["Action"]
    return {value} if isinstance(value, str) else set(value)


def statements_on(statements: list[dict[str, Any]], resource: Any) -> list[dict[str, Any]]:
    return [s for s in statements if s["Resource"] == resource]


def bucket_object_arn(bucket_id: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/*"]]}


def imported_object_arn(name: str) -> dict[str, Any]:
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{name}/*"]]}


def all_keys(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in (key, *all_keys(value))]
    if isinstance(node, list):
        return [k for item in node for k in all_keys(item)]
    return []


def tls_only_policy(synth: Any, bucket_id: str) -> bool:
    for policy in synth.resources("AWS::S3::BucketPolicy").values():
        if policy["Properties"]["Bucket"] == {"Ref": bucket_id}:
            for s in policy["Properties"]["PolicyDocument"]["Statement"]:
                if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
                    return True
    return False


PRIVATE = {
    "BlockPublicAcls": True,
    "BlockPublicPolicy": True,
    "IgnorePublicAcls": True,
    "RestrictPublicBuckets": True,
}
SSE_S3 = {"ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


# --- buckets -------------------------------------------------------------------------------------------
def test_landing_bucket_is_private_encrypted_tls_only_and_aborts_multipart(default_synth: Any) -> None:
    landing_id = logical_id(default_synth, default_synth.stack.storage.landing)
    bucket = default_synth.json["Resources"][landing_id]
    props = bucket["Properties"]

    assert props["PublicAccessBlockConfiguration"] == PRIVATE
    assert props["BucketEncryption"] == SSE_S3
    assert tls_only_policy(default_synth, landing_id)
    rules = props["LifecycleConfiguration"]["Rules"]
    assert {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}.items() <= rules[0].items()
    # By default nothing on the landing bucket ever expires: a rejected file is kept, tagged.
    assert not any("ExpirationInDays" in r or "TagFilters" in r for r in rules)
    assert "VersioningConfiguration" not in props
    assert bucket["DeletionPolicy"] == "Retain"


def test_rejected_uploads_expire_only_when_configured(named_synth: Any) -> None:
    landing = named_synth.json["Resources"][logical_id(named_synth, named_synth.stack.storage.landing)]
    rules = landing["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if "ExpirationInDays" in r]

    assert expiring == [
        {
            "ExpirationInDays": 30,
            "Id": "ExpireRejectedUploads",
            "Status": "Enabled",
            "TagFilters": [{"Key": c.REJECTED_TAG_KEY, "Value": c.REJECTED_TAG_VALUE}],
        }
    ]
    assert landing["Properties"]["BucketName"] == "ocs-landing-new"


def test_archive_bucket_is_versioned_private_encrypted_tls_only_retained_and_moves_to_ia(default_synth: Any) -> None:
    archive_id = logical_id(default_synth, default_synth.stack.storage.archive)
    bucket = default_synth.json["Resources"][archive_id]
    props = bucket["Properties"]

    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == PRIVATE
    assert props["BucketEncryption"] == SSE_S3
    assert tls_only_policy(default_synth, archive_id)
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    ia = [r for r in props["LifecycleConfiguration"]["Rules"] if "Transitions" in r]
    assert ia[0]["Transitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 60}]
    assert ia[0]["NoncurrentVersionTransitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 60}]


def test_created_buckets_log_server_access_to_a_private_log_bucket(default_synth: Any) -> None:
    logs_id = logical_id(default_synth, default_synth.stack.storage.access_logs)
    for bucket in (default_synth.stack.storage.landing, default_synth.stack.storage.archive):
        props = default_synth.json["Resources"][logical_id(default_synth, bucket)]["Properties"]
        assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_id}
    assert default_synth.json["Resources"][logs_id]["Properties"]["PublicAccessBlockConfiguration"] == PRIVATE


def test_imported_buckets_are_referenced_not_created(imported_synth: Any) -> None:
    assert imported_synth.resources("AWS::S3::Bucket") == {}
    outputs = imported_synth.json["Outputs"]
    assert outputs[c.OUTPUT_LANDING_BUCKET]["Value"] == imported_synth.context["existing_landing_bucket"]
    assert outputs[c.OUTPUT_ARCHIVE_BUCKET]["Value"] == imported_synth.context["existing_archive_bucket"]


# --- notification and queues ----------------------------------------------------------------------------
def test_landing_notifies_the_queue_on_object_creation(default_synth: Any) -> None:
    queue_id = logical_id(default_synth, default_synth.stack.queueing.queue)
    notification = default_synth.only("Custom::S3BucketNotifications")["Properties"]

    assert notification["NotificationConfiguration"] == {
        "QueueConfigurations": [{"Events": ["s3:ObjectCreated:*"], "QueueArn": {"Fn::GetAtt": [queue_id, "Arn"]}}]
    }
    # The stack's own new bucket: the stack owns its whole notification configuration.
    assert notification["Managed"] is True


def test_imported_landing_keeps_its_notifications_and_gets_one_filtered_notification_per_suffix(
    imported_synth: Any,
) -> None:
    notification = imported_synth.only("Custom::S3BucketNotifications")["Properties"]
    configs = notification["NotificationConfiguration"]["QueueConfigurations"]

    assert notification["BucketName"] == imported_synth.context["existing_landing_bucket"]
    # Unmanaged: CDK's handler merges with the notifications the bucket already has, never replaces them.
    assert notification["Managed"] is False
    filters = [{r["Name"]: r["Value"] for r in q["Filter"]["Key"]["FilterRules"]} for q in configs]
    assert filters == [
        {"prefix": "incoming/", "suffix": ".fits.fz"},
        {"prefix": "incoming/", "suffix": ".fits"},
        {"prefix": "incoming/", "suffix": ".tar.gz"},
    ]


@pytest.mark.parametrize("variant", ["default_synth", "imported_synth"])
def test_queue_visibility_is_six_function_timeouts_and_dlq_after_configured_receives(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth = request.getfixturevalue(variant)
    queue = synth.json["Resources"][logical_id(synth, synth.stack.queueing.queue)]["Properties"]
    dlq_id = logical_id(synth, synth.stack.queueing.dead_letter_queue)
    timeout = function_resource(synth)["Properties"]["Timeout"]

    assert queue["VisibilityTimeout"] >= 6 * timeout
    expected_receives = int(synth.context.get("max_receive_count", 5))
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": expected_receives,
    }
    for queue_id in (logical_id(synth, synth.stack.queueing.queue), dlq_id):
        assert synth.json["Resources"][queue_id]["Properties"]["SqsManagedSseEnabled"] is True


# --- the function --------------------------------------------------------------------------------------
def test_function_runtime_architecture_memory_timeout_tracing(default_synth: Any) -> None:
    props = function_resource(default_synth)["Properties"]
    family, version = props["Runtime"][:6], props["Runtime"][6:]

    assert family == "python" and tuple(map(int, version.split("."))) >= (3, 12)
    assert version == c.LAMBDA_PYTHON_VERSION  # the bundler builds wheels for exactly this one
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == 1024
    assert props["TracingConfig"] == {"Mode": "Active"}
    # Long enough to stream an md5 of the largest expected object (max_object_gib, default 8) alone.
    assert props["Timeout"] >= 8 * 1024 / MD5_STREAM_MIB_PER_S
    assert props["Timeout"] <= 900


def test_event_source_mapping_batches_reports_item_failures_and_caps_concurrency(default_synth: Any) -> None:
    default_synth.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [logical_id(default_synth, default_synth.stack.queueing.queue), "Arn"]},
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 5,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 5},
        },
    )


def test_snapstart_on_published_versions_and_the_queue_invokes_the_live_alias(
    default_synth: Any, named_synth: Any
) -> None:
    function_id = logical_id(default_synth, default_synth.stack.ingest.function)
    alias_id = logical_id(default_synth, default_synth.stack.ingest.alias)
    alias = default_synth.json["Resources"][alias_id]["Properties"]
    version = default_synth.only("AWS::Lambda::Version")

    assert function_resource(default_synth)["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert alias["Name"] == c.FUNCTION_ALIAS_NAME and alias["FunctionName"] == {"Ref": function_id}
    assert alias["FunctionVersion"]["Fn::GetAtt"][1] == "Version"
    assert version["Properties"]["FunctionName"] == {"Ref": function_id}
    assert version["DeletionPolicy"] == "Delete"  # SnapStart bills the cache of every version kept
    mapping = default_synth.only("AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["FunctionName"]["Fn::Join"][1][1] == f":{c.FUNCTION_ALIAS_NAME}"
    assert "SnapStart" not in function_resource(named_synth)["Properties"]  # -c snapstart=false
    assert default_synth.json["Outputs"][c.OUTPUT_FUNCTION_ALIAS_ARN]["Value"] == {"Ref": alias_id}


def test_function_environment_comes_from_configuration(default_synth: Any) -> None:
    env = function_resource(default_synth)["Properties"]["Environment"]["Variables"]
    stack = default_synth.stack

    assert env[c.ENV_BUCKET] == {"Ref": logical_id(default_synth, stack.storage.archive)}
    assert env[c.ENV_TOKEN_SECRET_ARN] == {"Ref": logical_id(default_synth, stack.ingest.secret)}
    assert env[c.ENV_IDEMPOTENCY_TABLE] == {"Ref": logical_id(default_synth, stack.ingest.table)}
    assert env[c.ENV_LANDING_BUCKET] == {"Ref": logical_id(default_synth, stack.storage.landing)}
    assert env[c.ENV_EVENT_BUS_NAME] == {"Ref": logical_id(default_synth, stack.events.bus)}
    assert {k: v for k, v in env.items() if isinstance(v, str)} == {
        "API_ROOT": "https://archive-api.example.invalid/",
        "INGESTER_PROCESS_NAME": "lambda_ingest",
        "S3_DAYS_TO_IA_STORAGE": "60",
        "KEEP_LANDING_OBJECT": "false",
        "HTTP_CONNECT_TIMEOUT": "5",
        "HTTP_READ_TIMEOUT": "30",
        "COPY_CONCURRENCY": "8",
        "SUBMIT_METRICS_ASYNCHRONOUSLY": "False",
        "POWERTOOLS_SERVICE_NAME": "lambda_ingest",
        "POWERTOOLS_METRICS_NAMESPACE": "LambdaIngest",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def test_context_tuning_reaches_the_template(imported_synth: Any) -> None:
    props = function_resource(imported_synth)["Properties"]
    env = props["Environment"]["Variables"]

    assert props["MemorySize"] == 2048
    # The time budget rule: margin + one largest record (max_object_gib=2) + the rest of a batch of 50.
    assert props["Timeout"] == HANDLER_MARGIN_S + math.ceil(60 + 2048 / 50 + 2048 / 200) + 49 * ORDINARY_RECORD_S
    imported_synth.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {"BatchSize": 50, "MaximumBatchingWindowInSeconds": 10, "ScalingConfig": {"MaximumConcurrency": 3}},
    )
    assert env["API_ROOT"] == "https://archive-api.example.org/"
    assert env["BUCKET"] == imported_synth.context["existing_archive_bucket"]
    assert env["INGESTER_PROCESS_NAME"] == "ingester-west"
    assert env["S3_DAYS_TO_IA_STORAGE"] == "90"
    assert env["KEEP_LANDING_OBJECT"] == "true"
    assert env["OPENTSDB_HOSTNAME"] == "tsdb.example.org"
    # ocs_archive's variables pass through, in the form ocs_archive parses.
    assert env["REQUIRED_HEADERS"] == "PROPID,DATE-OBS"
    assert env["OBSERVATION_DATE_KEY"] == "DATE-OBS"
    assert env["DAYS_UNTIL_PUBLIC"] == "30"
    imported_synth.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.org"}
    )


# --- secret ------------------------------------------------------------------------------------------
def test_created_secret_has_no_value_in_the_template_and_only_the_function_reads_it(default_synth: Any) -> None:
    secret_id = logical_id(default_synth, default_synth.stack.ingest.secret)
    secret = default_synth.only("AWS::SecretsManager::Secret")["Properties"]
    role_arn = {"Fn::GetAtt": [logical_id(default_synth, default_synth.stack.ingest.role), "Arn"]}

    assert "SecretString" not in secret and "GenerateSecretString" in secret  # a random placeholder
    readers = [
        (policy["Properties"]["Roles"], s["Resource"])
        for policy in default_synth.resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in actions(s)
    ]
    assert readers == [([{"Ref": role_arn["Fn::GetAtt"][0]}], {"Ref": secret_id})]
    resource_policy = default_synth.only("AWS::SecretsManager::ResourcePolicy")["Properties"]
    assert resource_policy["ResourcePolicy"]["Statement"] == [
        {
            "Action": "secretsmanager:GetSecretValue",
            "Condition": {"StringNotEquals": {"aws:PrincipalArn": role_arn}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": "*",
            "Sid": "OnlyTheStackFunctionsRead",
        }
    ]


@pytest.mark.parametrize("variant", ["default_synth", "imported_synth"])
def test_template_contains_no_secret_value(variant: str, request: pytest.FixtureRequest) -> None:
    synth = request.getfixturevalue(variant)
    env = function_resource(synth)["Properties"]["Environment"]["Variables"]

    # CloudFormation properties that would carry a secret's value: none anywhere in the template.
    assert not {"SecretString", "SecretStringTemplate", "SecretBinary"} & set(all_keys(synth.json))
    assert not c.FORBIDDEN_ENV & set(env)  # only the secret's ARN is passed, never a token


def test_imported_secret_is_granted_by_arn_and_not_created(imported_synth: Any) -> None:
    arn = imported_synth.context["token_secret_arn"]
    statements = function_role_statements(imported_synth)

    assert imported_synth.resources("AWS::SecretsManager::Secret") == {}
    assert function_resource(imported_synth)["Properties"]["Environment"]["Variables"][c.ENV_TOKEN_SECRET_ARN] == arn
    assert [actions(s) for s in statements_on(statements, arn)] == [
        {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    ]
    assert imported_synth.json["Outputs"][c.OUTPUT_TOKEN_SECRET_ARN]["Value"] == arn


# --- table -------------------------------------------------------------------------------------------
def test_idempotency_table_is_on_demand_with_ttl(default_synth: Any) -> None:
    default_synth.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": c.IDEMPOTENCY_KEY_ATTR, "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": c.IDEMPOTENCY_TTL_ATTR, "Enabled": True},
        },
    )


# --- least privilege ---------------------------------------------------------------------------------
def test_function_role_is_least_privilege(default_synth: Any) -> None:
    stack = default_synth.stack
    landing_id = logical_id(default_synth, stack.storage.landing)
    archive_id = logical_id(default_synth, stack.storage.archive)
    statements = function_role_statements(default_synth)

    by_resource = {json.dumps(s["Resource"], sort_keys=True): actions(s) for s in statements}
    assert by_resource[json.dumps(bucket_object_arn(landing_id), sort_keys=True)] == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:PutObjectTagging",
        "s3:PutObjectVersionTagging",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
    }
    assert by_resource[json.dumps({"Fn::GetAtt": [landing_id, "Arn"]}, sort_keys=True)] == {"s3:ListBucket"}
    # No tag reads on the landing bucket and no tag writes on the archive: the copy replaces tags
    # (TaggingDirective=REPLACE), so landing tags never reach the archive.
    assert by_resource[json.dumps(bucket_object_arn(archive_id), sort_keys=True)] == {
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:DeleteObjectVersion",
        "s3:GetObjectVersion",
    }
    assert by_resource[json.dumps({"Fn::GetAtt": [archive_id, "Arn"]}, sort_keys=True)] == {"s3:ListBucketVersions"}
    assert by_resource[json.dumps({"Fn::GetAtt": [logical_id(default_synth, stack.ingest.table), "Arn"]})] == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    bus_arn = {"Fn::GetAtt": [logical_id(default_synth, stack.events.bus), "Arn"]}
    assert by_resource[json.dumps(bus_arn, sort_keys=True)] == {"events:PutEvents"}
    # "*" only where AWS offers no resource (X-Ray); no wildcard actions anywhere.
    assert [actions(s) for s in statements if s["Resource"] == "*"] == [
        {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    ]
    assert not [a for s in statements for a in actions(s) if a.endswith("*")]
    # The archive is read back only for the orphan sweep (versions of one key), never whole objects' bytes
    # by GetObject on the current version; the function has no managed policies.
    on_archive = [s for s in statements if archive_id in json.dumps(s["Resource"])]
    reads = {a for s in on_archive for a in actions(s) if a.startswith(("s3:Get", "s3:List"))}
    assert on_archive and reads == {"s3:GetObjectVersion", "s3:ListBucketVersions"}
    role = default_synth.json["Resources"][logical_id(default_synth, stack.ingest.role)]["Properties"]
    assert "ManagedPolicyArns" not in role


def test_imported_buckets_are_granted_by_name(imported_synth: Any) -> None:
    statements = function_role_statements(imported_synth)
    landing = imported_synth.context["existing_landing_bucket"]
    archive = imported_synth.context["existing_archive_bucket"]

    assert "s3:DeleteObject" in actions(statements_on(statements, imported_object_arn(landing))[0])
    assert "s3:PutObject" in actions(statements_on(statements, imported_object_arn(archive))[0])


# --- monitoring --------------------------------------------------------------------------------------
def alarm_query(alarm: dict[str, Any]) -> str | None:
    metrics = alarm["Properties"].get("Metrics")
    return metrics[0]["Expression"] if metrics else None


def test_alarms_cover_queues_function_and_outcomes_and_notify_the_topic(default_synth: Any) -> None:
    topic_ref = {"Ref": logical_id(default_synth, default_synth.stack.monitoring.topic)}
    alarms = list(default_synth.resources("AWS::CloudWatch::Alarm").values())
    by_metric = {a["Properties"]["MetricName"]: a["Properties"] for a in alarms if "MetricName" in a["Properties"]}
    by_query = {alarm_query(a): a["Properties"] for a in alarms if alarm_query(a)}

    assert set(by_metric) == {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "Errors",
        "Throttles",
    }
    dlq_name = {"Fn::GetAtt": [logical_id(default_synth, default_synth.stack.queueing.dead_letter_queue), "QueueName"]}
    assert by_metric["ApproximateNumberOfMessagesVisible"]["Dimensions"] == [{"Name": "QueueName", "Value": dlq_name}]
    assert by_metric["ApproximateNumberOfMessagesVisible"]["Threshold"] == 1
    assert by_metric["ApproximateAgeOfOldestMessage"]["Threshold"] == 3600
    # Outcome metrics: summed over whatever dimensions they carry (FilesRejected{reason}, SystemFaults{reason}),
    # thresholds from context; a single system fault is enough.
    thresholds = {q: (a["Threshold"], a["ComparisonOperator"], a["Metrics"][0]["Period"]) for q, a in by_query.items()}
    assert thresholds == {
        f'SELECT SUM({c.REJECTED_METRIC}) FROM "{c.METRICS_NAMESPACE}"': (10, "GreaterThanThreshold", 300),
        f'SELECT SUM({c.SYSTEM_FAULT_METRIC}) FROM "{c.METRICS_NAMESPACE}"': (0, "GreaterThanThreshold", 300),
        f'SELECT SUM({c.SKIPPED_METRIC}) FROM "{c.METRICS_NAMESPACE}"': (10, "GreaterThanThreshold", 300),
        # Publishing is best effort, so a failure to publish is alarmed rather than failing the ingest.
        f'SELECT SUM({c.EVENT_PUBLISH_FAILURES_METRIC}) FROM "{c.METRICS_NAMESPACE}"': (0, "GreaterThanThreshold", 300),
    }
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [topic_ref]
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"


def test_dashboard_graphs_every_ingest_metric(default_synth: Any) -> None:
    body = json.dumps(default_synth.only("AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])

    for name in (*c.COUNT_METRICS, *c.BYTES_METRICS, c.LAG_METRIC, *c.DURATION_METRICS):
        assert f'\\"{c.METRICS_NAMESPACE}\\",\\"{name}\\"' in body, name
    # FilesRejected is emitted per reason: graphed by reason (SEARCH) and in total (SUM of the SEARCH).
    search = f"SEARCH('{{{c.METRICS_NAMESPACE},{c.REJECTED_REASON_DIMENSION},service}} MetricName="
    assert body.count(search) == 2 and f"SUM({search}" in body


# --- outputs, checks, packaging -----------------------------------------------------------------------
def test_stack_outputs(default_synth: Any) -> None:
    outputs = default_synth.json["Outputs"]
    stack = default_synth.stack

    assert outputs[c.OUTPUT_LANDING_BUCKET]["Value"] == {"Ref": logical_id(default_synth, stack.storage.landing)}
    assert outputs[c.OUTPUT_ARCHIVE_BUCKET]["Value"] == {"Ref": logical_id(default_synth, stack.storage.archive)}
    assert outputs[c.OUTPUT_INGEST_QUEUE_URL]["Value"] == {"Ref": logical_id(default_synth, stack.queueing.queue)}
    dlq_id = logical_id(default_synth, stack.queueing.dead_letter_queue)
    assert outputs[c.OUTPUT_DLQ_URL]["Value"] == {"Ref": dlq_id}
    assert outputs[c.OUTPUT_TOKEN_SECRET_ARN]["Value"] == {"Ref": logical_id(default_synth, stack.ingest.secret)}
    assert outputs[c.OUTPUT_FUNCTION_NAME]["Value"] == {"Ref": logical_id(default_synth, stack.ingest.function)}


@pytest.mark.parametrize("variant", ["default_synth", "imported_synth"])
def test_cdk_nag_aws_solutions_reports_nothing_unsuppressed(variant: str, request: pytest.FixtureRequest) -> None:
    annotations = request.getfixturevalue(variant).annotations

    annotations.has_no_error("*", NAG_RULE)
    annotations.has_no_warning("*", NAG_RULE)


def test_every_nag_suppression_states_its_reason(default_synth: Any) -> None:
    suppressions = [
        rule
        for resource in default_synth.json["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]

    assert {s["id"] for s in suppressions} >= {"AwsSolutions-IAM5", "AwsSolutions-L1", "AwsSolutions-SMG4"}
    for s in suppressions:
        assert len(s["reason"]) >= 40, s  # a sentence, not a placeholder


def test_placeholder_api_root_warns_at_synth(default_synth: Any, imported_synth: Any) -> None:
    default_synth.annotations.has_warning("*", Match.string_like_regexp("api_root is the placeholder.*"))
    imported_synth.annotations.has_no_warning("*", Match.string_like_regexp("api_root is the placeholder.*"))


def test_source_bundle_holds_the_package_without_dev_only_parts(default_synth: Any) -> None:
    code = function_resource(default_synth)["Properties"]["Code"]
    asset_hash = code["S3Key"].removesuffix(".zip")
    staged = default_synth.outdir / f"asset.{asset_hash}"

    assert (staged / c.PACKAGE_NAME / "__init__.py").is_file()
    assert not (staged / c.PACKAGE_NAME / "local").exists()
    assert not list(staged.rglob("__pycache__"))
    assert not list(staged.glob("aws_cdk*")) and not list(staged.glob("cdk_nag*"))


# --- issue 15: events, audit, S3 Batch Operations --------------------------------------------------------
def test_created_event_bus_takes_the_functions_events(default_synth: Any) -> None:
    bus = default_synth.only("AWS::Events::EventBus")

    assert default_synth.resources("AWS::Events::Rule") == {}  # the example rule and the audit are opt-in
    assert default_synth.json["Outputs"][c.OUTPUT_EVENT_BUS_NAME]["Value"] == {
        "Ref": logical_id(default_synth, default_synth.stack.events.bus)
    }
    assert bus["Properties"]["Description"]


def test_default_bus_example_rule_sends_archived_frames_to_a_queue(imported_synth: Any) -> None:
    stack = imported_synth.stack
    env = function_resource(imported_synth)["Properties"]["Environment"]["Variables"]
    queue_id = logical_id(imported_synth, stack.events.archived_queue)
    rules = [
        r["Properties"]
        for r in imported_synth.resources("AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    ]

    assert env[c.ENV_EVENT_BUS_NAME] == "default" and imported_synth.resources("AWS::Events::EventBus") == {}
    assert len(rules) == 1 and rules[0]["EventBusName"] == "default"
    assert rules[0]["EventPattern"] == {"source": [c.EVENT_SOURCE], "detail-type": [c.ARCHIVED_DETAIL_TYPE]}
    assert rules[0]["Targets"][0]["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert "DeadLetterConfig" in rules[0]["Targets"][0]
    put = [s for s in function_role_statements(imported_synth) if "events:PutEvents" in actions(s)]
    assert len(put) == 1 and ":event-bus/default" in json.dumps(put[0]["Resource"])
    queue_policy = json.dumps(imported_synth.resources("AWS::SQS::QueuePolicy"))
    assert "events.amazonaws.com" in queue_policy
    assert imported_synth.json["Outputs"][c.OUTPUT_ARCHIVED_FRAMES_QUEUE_URL]["Value"] == {"Ref": queue_id}


def test_no_bus_means_no_event_bus_name(named_synth: Any) -> None:
    env = function_resource(named_synth)["Properties"]["Environment"]["Variables"]

    assert c.ENV_EVENT_BUS_NAME not in env
    assert not [s for s in function_role_statements(named_synth) if "events:PutEvents" in actions(s)]


def test_scheduled_audit_runs_the_audit_handler_read_only_and_alarms_on_inconsistencies(imported_synth: Any) -> None:
    stack = imported_synth.stack
    audit_id = logical_id(imported_synth, stack.audit.function)
    audit = imported_synth.json["Resources"][audit_id]["Properties"]
    ingest_env = function_resource(imported_synth)["Properties"]["Environment"]["Variables"]
    schedule = [
        r["Properties"]
        for r in imported_synth.resources("AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
    ]

    assert audit["Handler"] == c.AUDIT_HANDLER
    assert audit["Code"] == function_resource(imported_synth)["Properties"]["Code"]  # the same bundle
    env = audit["Environment"]["Variables"]
    assert (
        env[c.ENV_LANDING_BUCKET]
        == ingest_env[c.ENV_LANDING_BUCKET]
        == imported_synth.context["existing_landing_bucket"]
    )
    for name in (c.ENV_BUCKET, c.ENV_API_ROOT, c.ENV_TOKEN_SECRET_ARN, "HTTP_READ_TIMEOUT", "REQUIRED_HEADERS"):
        assert env[name] == ingest_env[name]
    assert schedule == [
        {
            "Description": "lambda_ingest: scheduled audit",
            "ScheduleExpression": "rate(1 day)",
            "State": "ENABLED",
            "Tags": [{"Key": "project", "Value": "lambda_ingest"}],
            "Targets": [
                {"Arn": {"Fn::GetAtt": [audit_id, "Arn"]}, "Id": "Target0", "RetryPolicy": {"MaximumRetryAttempts": 2}}
            ],
        }
    ]
    role_id = audit["Role"]["Fn::GetAtt"][0]
    granted = {
        a
        for policy in imported_synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        for a in actions(s)
    }
    assert not [a for a in granted if a.startswith(("s3:Put", "s3:Delete", "s3:Abort", "events:"))]
    queries = [alarm_query(a) for a in imported_synth.resources("AWS::CloudWatch::Alarm").values()]
    assert f'SELECT SUM({c.AUDIT_METRIC}) FROM "{c.METRICS_NAMESPACE}"' in queries
    assert f'SELECT SUM({c.AUDIT_INCOMPLETE_METRIC}) FROM "{c.METRICS_NAMESPACE}"' in queries
    assert f'SELECT SUM({c.REJECTED_METRIC}) FROM "{c.METRICS_NAMESPACE}"' in queries
    rejected = [
        a["Properties"]["Threshold"]
        for a in imported_synth.resources("AWS::CloudWatch::Alarm").values()
        if alarm_query(a) == f'SELECT SUM({c.REJECTED_METRIC}) FROM "{c.METRICS_NAMESPACE}"'
    ]
    assert rejected == [25]  # -c rejected_alarm_threshold=25


def test_batch_operations_role_invokes_the_alias_and_reads_manifests_under_its_prefix(default_synth: Any) -> None:
    stack = default_synth.stack
    role_id = logical_id(default_synth, stack.batch_operations.role)
    role = default_synth.json["Resources"][role_id]["Properties"]
    landing_id = logical_id(default_synth, stack.storage.landing)
    statements = [
        s
        for policy in default_synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]

    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "batchoperations.s3.amazonaws.com"
    }
    by_resource = {json.dumps(s["Resource"], sort_keys=True): actions(s) for s in statements}
    assert by_resource == {
        json.dumps({"Ref": logical_id(default_synth, stack.ingest.alias)}): {"lambda:InvokeFunction"},
        json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [landing_id, "Arn"]}, "/batch-operations/*"]]}, sort_keys=True): {
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:PutObject",
        },
        json.dumps({"Fn::GetAtt": [landing_id, "Arn"]}, sort_keys=True): {"s3:GetBucketLocation"},
    }
    assert default_synth.json["Outputs"][c.OUTPUT_BATCH_OPERATIONS_ROLE_ARN]["Value"] == {
        "Fn::GetAtt": [role_id, "Arn"]
    }
    # Reports written there would notify the queue without a landing prefix/suffix filter: synth says so.
    default_synth.annotations.has_warning("*", Match.string_like_regexp(".*notify the ingest queue.*"))
