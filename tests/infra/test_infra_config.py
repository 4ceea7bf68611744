"""cdk context -> IngestConfig: defaults, coercion of `-c` strings, validation (pure Python, no synth)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from infra import constants as c
from infra.config import (
    CONTEXT_KEYS,
    HANDLER_MARGIN_S,
    MD5_STREAM_MIB_PER_S,
    ORDINARY_RECORD_S,
    PLACEHOLDER_API_ROOT,
    ConfigError,
    IngestConfig,
    load_config,
)

pytestmark = pytest.mark.infra

DEPLOY_DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def test_empty_context_gives_the_documented_defaults() -> None:
    config = load_config({})

    assert config == IngestConfig()
    assert config.api_root == PLACEHOLDER_API_ROOT and config.placeholder_api_root
    assert (config.batch_size, config.max_concurrency, config.max_receive_count) == (10, 5, 5)
    assert config.rejected_expiry_days == 0  # a rejected file is never deleted unless asked for
    assert config.bundling == "pip"


def test_cli_strings_are_coerced_like_cdk_json_values() -> None:
    from_cli = load_config(
        {
            "batch_size": "25",
            "keep_landing_object": "true",
            "landing_suffixes": ".fits, .fits.fz",
            "max_object_gib": "1.5",
        }
    )
    from_json = load_config(
        {
            "batch_size": 25,
            "keep_landing_object": True,
            "landing_suffixes": [".fits", ".fits.fz"],
            "max_object_gib": 1.5,
        }
    )

    assert from_cli == from_json
    assert from_cli.landing_suffixes == (".fits", ".fits.fz")


def test_timeout_covers_streaming_the_largest_object_and_visibility_is_six_timeouts() -> None:
    config = load_config({"max_object_gib": 4, "batching_window_seconds": 7})

    assert config.function_timeout_seconds >= math.ceil(4 * 1024 / MD5_STREAM_MIB_PER_S)
    assert config.visibility_timeout_seconds == 6 * config.function_timeout_seconds + 7
    assert load_config({"function_timeout_seconds": "600"}).function_timeout_seconds == 600


def test_timeout_holds_the_handlers_margin_one_largest_record_and_the_rest_of_a_batch() -> None:
    small = load_config({"batch_size": 1, "max_object_gib": 1})
    big = load_config({"batch_size": 100, "batching_window_seconds": 5, "max_object_gib": 1})

    assert small.function_timeout_seconds == HANDLER_MARGIN_S + small.largest_record_seconds
    assert big.function_timeout_seconds - small.function_timeout_seconds == 99 * ORDINARY_RECORD_S
    # An explicit timeout may exceed the rule, never fall below it.
    assert load_config({"batch_size": 1, "max_object_gib": 1, "function_timeout_seconds": 900}).timeout_override == 900
    with pytest.raises(ConfigError, match=r"'function_timeout_seconds' 100 is below what 'batch_size' 10"):
        load_config({"function_timeout_seconds": 100})
    with pytest.raises(ConfigError, match=r"'batch_size' 400 needs a \d+ s timeout .* over Lambda's 900 s"):
        load_config({"batch_size": 400, "batching_window_seconds": 5})


def test_the_rule_uses_the_handlers_own_margin_and_per_record_time() -> None:
    handler = pytest.importorskip("lambda_ingest.handler")
    if not hasattr(handler, "SAFETY_MARGIN_MS"):
        pytest.skip("this lambda_ingest.handler has no time budget yet (issue 10)")
    config = load_config({"max_object_gib": 8})
    largest = int(config.max_object_gib * 1024**3)

    assert HANDLER_MARGIN_S * 1000 == handler.SAFETY_MARGIN_MS
    assert ORDINARY_RECORD_S * 1000 == handler.PER_RECORD_MS
    # A fresh invocation always starts the largest expected object.
    assert config.function_timeout_seconds * 1000 >= handler.record_budget_ms(largest)


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("max_concurency", "max_concurrency"), ("batchsize", "batch_size"), ("snap_start", "snapstart")],
)
def test_a_misspelled_context_key_is_refused_with_the_closest_known_key(key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"unknown context key {key!r}: did you mean {suggestion!r}?")):
        load_config({key: "50"})


def test_cdks_own_context_keys_are_not_the_projects_to_check() -> None:
    cdk_keys = {
        "@aws-cdk/core:enablePartitionLiterals": True,
        "aws:cdk:enable-path-metadata": True,
        "availability-zones:account=123456789012:region=us-west-2": ["us-west-2a"],
        "cdk-migrate": True,
        "acknowledged-issue-numbers": [1],
    }

    assert load_config(cdk_keys) == IngestConfig()


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"batch_size": "ten"}, "'batch_size' must be an integer"),
        ({"batch_size": 0}, "'batch_size' must be between 1 and 10000"),
        ({"max_concurrency": 1}, "'max_concurrency' must be between 2"),
        ({"days_to_ia": 10}, "'days_to_ia' must be between 30"),
        ({"keep_landing_object": "maybe"}, "'keep_landing_object' must be true or false"),
        ({"api_root": "archive.example.org"}, "'api_root' must be an http"),
        ({"token_secret_arn": "my-token"}, "'token_secret_arn' is not a Secrets Manager secret ARN"),
        ({"existing_landing_bucket": "Bad_Name"}, "not a valid S3 bucket name"),
        ({"landing_bucket_name": "a-bucket", "existing_landing_bucket": "b-bucket"}, "not both"),
        ({"existing_landing_bucket": "same-one", "archive_bucket_name": "same-one"}, "must differ"),
        ({"batch_size": 100, "batching_window_seconds": 0}, "at least 1 when 'batch_size' is over 10"),
        ({"max_object_gib": 64}, "over Lambda's 900 s"),
        ({"log_retention_days": 42}, "'log_retention_days' must be one of"),
        ({"log_level": "chatty"}, "'log_level' must be one of"),
        ({"bundling": "docker"}, "'bundling' must be one of"),
        ({"landing_suffixes": ".fz,.fits.fz"}, "'landing_suffixes' overlap"),
        ({"alarm_email": "nobody"}, "not an e-mail address"),
        ({"archive_env": {"DAYS_UNTIL_PUBLIC": "abc"}}, "'archive_env': DAYS_UNTIL_PUBLIC must be a whole number"),
        ({"archive_env": {"OBSERVATION_DATE_KEY": "DATE OBS"}}, "'archive_env': OBSERVATION_DATE_KEY must name one"),
        ({"rejected_alarm_threshold": -1}, "'rejected_alarm_threshold' must be between 0"),
        ({"snapstart": "sometimes"}, "'snapstart' must be true or false"),
        ({"event_bus": "my bus!"}, "'event_bus' must be create, default, none or an event bus name"),
        ({"audit_schedule": "daily"}, "'audit_schedule' must be an EventBridge schedule"),
        ({"batch_operations_prefix": "/"}, "'batch_operations_prefix' must be a key prefix"),
    ],
)
def test_invalid_context_is_refused_naming_the_key(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(context)


@pytest.mark.parametrize("key", ["auth_token", "AUTH_TOKEN", "token"])
def test_a_token_in_context_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="never passed through cdk context"):
        load_config({key: "s3cr3t"})


def test_archive_env_passes_ocs_archive_names_in_the_form_ocs_archive_parses() -> None:
    config = load_config(
        {
            "archive_env": '{"REQUIRED_HEADERS": ["PROPID", "DATE-OBS"], "OBSERVATION_DATE_KEY": "DATE-OBS", '
            '"DAYS_UNTIL_PUBLIC": 30, "FILETYPE_MAPPING_OVERRIDES": {".fits.fz": "my.module.Fits"}}'
        }
    )

    assert dict(config.archive_env) == {
        "REQUIRED_HEADERS": "PROPID,DATE-OBS",
        "OBSERVATION_DATE_KEY": "DATE-OBS",
        "DAYS_UNTIL_PUBLIC": "30",
        "FILETYPE_MAPPING_OVERRIDES": "{'.fits.fz': 'my.module.Fits'}",
    }
    env = config.function_environment(archive_bucket="a", secret_arn="s", table_name="t", landing_bucket="l")
    assert env["REQUIRED_HEADERS"] == "PROPID,DATE-OBS"


@pytest.mark.parametrize("name", ["BUCKET", "API_ROOT", "AUTH_TOKEN", "FOO", "AWS_SECRET_ACCESS_KEY", "lower_KEY"])
def test_archive_env_refuses_other_names(name: str) -> None:
    with pytest.raises(ConfigError, match="archive_env"):
        load_config({"archive_env": {name: "x"}})


def test_archive_env_over_lambdas_4kb_is_refused() -> None:
    with pytest.raises(ConfigError, match="over Lambda's 4 KB"):
        load_config({"archive_env": {"RELATED_FRAME_KEYS": "K" * 4000}})


def test_function_environment_never_holds_a_token() -> None:
    env = load_config({}).function_environment(archive_bucket="a", secret_arn="arn", table_name="t", landing_bucket="l")

    assert not c.FORBIDDEN_ENV & set(env)
    assert env[c.ENV_TOKEN_SECRET_ARN] == "arn"


def test_every_context_key_is_documented_in_deploy_md() -> None:
    table_keys = set(re.findall(r"^\| `([a-z_]+)` \|", DEPLOY_DOC.read_text(), flags=re.MULTILINE))

    assert table_keys == {k.name for k in CONTEXT_KEYS}
