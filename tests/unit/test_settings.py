"""Settings are read once, validated, and a bad value names its variable."""

from __future__ import annotations

import pytest

from lambda_ingest.errors import ConfigurationError
from lambda_ingest.settings import load_settings


def test_defaults_match_ocs_ingester() -> None:
    settings = load_settings({})
    assert settings.api_root == "http://127.0.0.1:8000/"
    assert settings.bucket == "testbucket"
    assert settings.s3_days_to_ia_storage == 60
    assert settings.ingester_process_name == "ingester"
    assert settings.submit_metrics_asynchronously is False


@pytest.mark.parametrize("root", ["http://archive/api", "http://archive/api/"])
def test_api_root_with_or_without_slash(root: str) -> None:
    assert load_settings({"API_ROOT": root}).archive_api_root == "http://archive/api/"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"S3_DAYS_TO_IA_STORAGE": "sixty"}, "S3_DAYS_TO_IA_STORAGE"),
        ({"HTTP_READ_TIMEOUT": "-1"}, "HTTP_READ_TIMEOUT"),
        ({"COPY_CONCURRENCY": "0"}, "COPY_CONCURRENCY"),
        ({"KEEP_LANDING_OBJECT": "maybe"}, "KEEP_LANDING_OBJECT"),
        ({"API_ROOT": "archive.example.org"}, "API_ROOT"),
        ({"HEADER_MAX_CARDS": "3"}, "HEADER_MAX_CARDS"),
    ],
)
def test_invalid_configuration_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(env)


@pytest.mark.parametrize(("raw", "expected"), [("True", True), ("False", False), ("1", True), ("no", False)])
def test_submit_metrics_asynchronously_accepts_ocs_ingester_spelling(raw: str, expected: bool) -> None:
    assert load_settings({"SUBMIT_METRICS_ASYNCHRONOUSLY": raw}).submit_metrics_asynchronously is expected


def test_token_is_not_in_repr() -> None:
    assert "s3cr3t" not in repr(load_settings({"AUTH_TOKEN": "s3cr3t"}))
