"""The synthesised stack, property by property (issue 4), plus cdk-nag, for the default and imported variants."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from infra import constants as c
from infra.config import MD5_STREAM_MIB_PER_S

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


def test_function_environment_comes_from_configuration(default_synth: Any) -> None:
    env = function_resource(default_synth)["Properties"]["Environment"]["Variables"]
    stack = default_synth.stack

    assert env[c.ENV_BUCKET] == {"Ref": logical_id(default_synth, stack.storage.archive)}
    assert env[c.ENV_TOKEN_SECRET_ARN] == {"Ref": logical_id(default_synth, stack.ingest.secret)}
    assert env[c.ENV_IDEMPOTENCY_TABLE] == {"Ref": logical_id(default_synth, stack.ingest.table)}
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
    assert props["Timeout"] == math.ceil(60 + 2048 / 50 + 2048 / 200)  # derived from max_object_gib=2
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
            "Sid": "OnlyTheIngestFunctionReads",
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
        "s3:GetObjectTagging",
        "s3:GetObjectVersionTagging",
        "s3:PutObjectTagging",
        "s3:PutObjectVersionTagging",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
    }
    assert by_resource[json.dumps({"Fn::GetAtt": [landing_id, "Arn"]}, sort_keys=True)] == {"s3:ListBucket"}
    assert by_resource[json.dumps(bucket_object_arn(archive_id), sort_keys=True)] == {
        "s3:PutObject",
        "s3:PutObjectTagging",
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
def test_alarms_cover_dlq_message_age_errors_throttles_and_notify_the_topic(default_synth: Any) -> None:
    topic_ref = {"Ref": logical_id(default_synth, default_synth.stack.monitoring.topic)}
    alarms = list(default_synth.resources("AWS::CloudWatch::Alarm").values())
    by_metric = {a["Properties"]["MetricName"]: a["Properties"] for a in alarms}

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
    for alarm in by_metric.values():
        assert alarm["AlarmActions"] == [topic_ref]


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
