"""Shared fixtures: environment, moto S3 with AWS-style version ids, the archive emulator, real frames."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambda_ingest.clients import new_session

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token-0123456789"
LANDING = "landing-bucket"
ARCHIVE = "archive-bucket"


FIXTURES_HINT = (
    "set LAMBDA_INGEST_FIXTURES to a folder of real LCO frames (its fits/ and other/ subfolders, or the fits/ "
    "folder itself), or put them in ../shared/fixtures beside the checkout"
)


def shared_fixtures_dir() -> Path:
    """Real LCO frames: LAMBDA_INGEST_FIXTURES, else ../shared/fixtures beside the checkout.

    The variable may name the fixtures folder or its `fits/` subfolder (a frames folder without a `fits/`
    of its own is taken as `fits/`).
    """
    folder = Path(os.environ.get("LAMBDA_INGEST_FIXTURES", ROOT.parent / "shared" / "fixtures")).expanduser()
    if not (folder / "fits").is_dir() and folder.name == "fits" and folder.is_dir():
        return folder.parent
    return folder


def real_frames() -> list[Any]:
    """The real frames, as `pytest.mark.parametrize` values; when there are none, one skipped case that
    says what is missing and how to provide it (instead of pytest's "got empty parameter set")."""
    folder = shared_fixtures_dir() / "fits"
    frames = sorted(folder.glob("*.fits*")) if folder.is_dir() else []
    if frames:
        return frames
    skip = pytest.mark.skip(reason=f"no real frames in {folder}: {FIXTURES_HINT}")
    return [pytest.param(None, id="no-real-frames", marks=skip)]


@pytest.fixture
def fixtures_dir() -> Path:
    folder = shared_fixtures_dir()
    if not folder.is_dir():
        pytest.skip(f"real frames not available at {folder}: {FIXTURES_HINT}")
    return folder


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from known settings, dummy AWS credentials and fresh clients."""
    from lambda_ingest.settings import reset_settings

    for name in (
        "AWS_PROFILE",
        "S3_ENDPOINT_URL",
        "AWS_ENDPOINT_URL",
        "IDEMPOTENCY_TABLE",
        "AUTH_TOKEN_SECRET_ARN",
        "OPENTSDB_HOSTNAME",
        "KEEP_LANDING_OBJECT",
        "FILESTORE_TYPE",  # an ocs_ingester user's shell may set these; tests choose their store
        "FILESYSTEM_STORAGE_ROOT_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("BUCKET", ARCHIVE)
    monkeypatch.setenv("AUTH_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    # ocs_ingester (the reference the tests compare with) would post its metrics to LCO's OpenTSDB host.
    # The same variable switches lambda_ingest's OpenTSDB sink off; its own tests delete it.
    monkeypatch.setenv("OPENTSDB_PYTHON_METRICS_TEST_MODE", "1")
    # moto decodes botocore's default streaming CRC trailer in pure Python (~6 MB/s); checksums only when
    # an operation requires them keeps large synthetic uploads fast. Production clients keep the default.
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "LambdaIngest")
    reset_settings()
    _reset_processor()
    yield
    reset_settings()
    _reset_processor()


def _reset_processor() -> None:
    from lambda_ingest.outcomes import reset_processor

    reset_processor()


@pytest.fixture
def s3() -> Iterator[object]:
    """moto S3 (in-process) issuing 32-character version ids, with a landing and a versioned archive bucket.

    Clients come from `clients.new_session()`, which shares the parsed service models: mock_aws drops boto3's
    default session at every start, and a `boto3.client` made afresh parsed S3's model again (~0.1 s a test).
    """
    from moto import mock_aws

    from lambda_ingest.local.s3 import aws_style_version_ids

    with aws_style_version_ids(), mock_aws():
        client = new_session().client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=LANDING)
        client.create_bucket(Bucket=ARCHIVE)
        client.put_bucket_versioning(Bucket=ARCHIVE, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def archive_api(s3: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The local Science Archive emulator on loopback, with API_ROOT/AUTH_TOKEN pointing at it."""
    from lambda_ingest.local.archive_emulator import ArchiveEmulator
    from lambda_ingest.settings import reset_settings

    with ArchiveEmulator(admin_token=ADMIN_TOKEN, s3_client=s3, bucket=ARCHIVE) as emulator:
        monkeypatch.setenv("API_ROOT", emulator.api_root)
        reset_settings()
        yield emulator


@pytest.fixture
def queue(s3: Any) -> tuple[Any, str, str]:
    """The landing bucket notifies an SQS queue, as the deployed stack does."""
    sqs = new_session().client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="ingest")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=LANDING,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    return sqs, url, arn


def set_env(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> None:
    """Set (or, with None, remove) environment variables for this test and read the settings again."""
    from lambda_ingest.settings import reset_settings

    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    reset_settings()
