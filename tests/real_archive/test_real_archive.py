"""The Lambda handler against the REAL Science Archive (2.7.2, unmodified) and its moto S3 file store.

Skipped unless `../shared/tools/real-archive/up.sh` is running and its export lines are in the environment
(REAL_API_ROOT, REAL_ARCHIVE_TOKEN, REAL_S3, REAL_BUCKET). CI cannot reach it; developers run
`eval "$(bash ../shared/tools/real-archive/up.sh | grep ^export)" && pytest tests/real_archive`.
What it checks is what the emulator might not reproduce: the thumbnail upsert (201 without id), each
version's own download URL, and that a wrong token or API root is a fault of the system, not of the file.
"""

from __future__ import annotations

import os
import random
import urllib.request
from typing import Any

import pytest

REAL = {name: os.environ.get(name) for name in ("REAL_API_ROOT", "REAL_ARCHIVE_TOKEN", "REAL_S3", "REAL_BUCKET")}
pytestmark = pytest.mark.skipif(
    not all(REAL.values()),
    reason="the real Science Archive is not running: start ../shared/tools/real-archive/up.sh and export "
    "the REAL_* lines it prints",
)
LANDING = "real-archive-landing"


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch) -> Any:
    """S3 = the archive's own moto server; API_ROOT/AUTH_TOKEN/BUCKET = the real archive's."""
    import boto3

    from lambda_ingest.settings import reset_settings

    monkeypatch.setenv("API_ROOT", REAL["REAL_API_ROOT"])
    monkeypatch.setenv("AUTH_TOKEN", REAL["REAL_ARCHIVE_TOKEN"])
    monkeypatch.setenv("BUCKET", REAL["REAL_BUCKET"])
    monkeypatch.setenv("S3_ENDPOINT_URL", REAL["REAL_S3"])
    reset_settings()
    s3 = boto3.client("s3", endpoint_url=REAL["REAL_S3"], region_name="us-east-1")
    s3.create_bucket(Bucket=LANDING)
    return s3


def unique_name() -> str:
    from lambda_ingest.local.synthetic import frame_name

    return frame_name(seq=random.randrange(1, 9999), day="20151219", ext="")


def s3_event(key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-12-01T00:00:00.000Z",
                "s3": {"bucket": {"name": LANDING}, "object": {"key": key}},
            }
        ]
    }


def run(event: dict[str, Any]) -> Any:
    from lambda_ingest.context import LocalContext
    from lambda_ingest.handler import handler

    return handler(event, LocalContext())


def archive_get(path: str) -> Any:
    import requests

    response = requests.get(
        REAL["REAL_API_ROOT"] + path, headers={"Authorization": f"Token {REAL['REAL_ARCHIVE_TOKEN']}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def test_frame_is_registered_and_its_version_url_downloads_the_bytes(real) -> None:
    from lambda_ingest.local.synthetic import make_frame_bytes

    # Given a new frame in the landing bucket
    name = unique_name()
    body = make_frame_bytes(name, ".fits.fz", seed=random.randrange(1 << 30))
    real.put_object(Bucket=LANDING, Key=f"{name}.fits.fz", Body=body)
    # When the handler ingests it
    [outcome] = run(s3_event(f"{name}.fits.fz"))["outcomes"]
    # Then the real archive holds it, and the version's own URL downloads exactly these bytes
    assert outcome["outcome"] == "ingested"
    [frame] = archive_get(f"frames/?basename_exact={name}")["results"]
    [version] = frame["version_set"]
    assert len(version["key"]) == 32
    with urllib.request.urlopen(version["url"], timeout=10) as download:
        assert download.read() == body
    # And a second delivery of the same bytes is already_ingested, pointing at that version
    real.put_object(Bucket=LANDING, Key=f"{name}.fits.fz", Body=body)
    [again] = run(s3_event(f"{name}.fits.fz"))["outcomes"]
    assert again["outcome"] == "already_ingested"
    assert again["version_id"] == version["key"]


def test_thumbnail_upsert_is_a_success_and_keeps_one_archive_version(real) -> None:
    name = unique_name()
    from lambda_ingest.local.synthetic import thumbnail_metadata

    meta = thumbnail_metadata(name)
    key = f"{name}-small.jpg"
    versions = []
    for attempt in range(2):
        # Given a thumbnail (new bytes each time) under the same thumbnail basename
        real.put_object(Bucket=LANDING, Key=key, Body=b"\xff\xd8\xff\xe0 jpeg %d" % attempt, Metadata=meta)
        # When it is ingested: the real archive answers 201 without an id (an upsert)
        [outcome] = run(s3_event(key))["outcomes"]
        assert outcome["outcome"] == "ingested", outcome
        versions.append(outcome["version_id"])
    # Then the archive's thumbnail points at the newest version, and the older copy is gone from the bucket
    items = [t for t in archive_get(f"thumbnails/?frame_basename={name}")["results"] if t["basename"] == key[:-4]]
    assert [t["key"] for t in items] == [versions[-1]]
    archive_key = f"cpt/kb70/20151219/thumbnails/{key}"
    left = real.list_object_versions(Bucket=REAL["REAL_BUCKET"], Prefix=archive_key).get("Versions", [])
    assert [v["VersionId"] for v in left] == [versions[-1]]


@pytest.mark.parametrize("setting", ["AUTH_TOKEN", "API_ROOT"])
def test_wrong_token_or_api_root_is_a_system_fault_not_a_rejection(real, monkeypatch, setting) -> None:
    from lambda_ingest.local.synthetic import make_frame_bytes
    from lambda_ingest.settings import reset_settings

    # Given a good frame, and a rotated token or an API root with an extra /api/
    name = unique_name()
    real.put_object(Bucket=LANDING, Key=f"{name}.fits.fz", Body=make_frame_bytes(name, ".fits.fz", seed=7))
    wrong = "0" * 40 if setting == "AUTH_TOKEN" else REAL["REAL_API_ROOT"].rstrip("/") + "/api/"
    monkeypatch.setenv(setting, wrong)
    reset_settings()
    # When the handler runs, the invocation fails (so Lambda/SQS retries it)...
    from lambda_ingest.errors import SystemFaultError

    with pytest.raises(SystemFaultError):
        run(s3_event(f"{name}.fits.fz"))
    # ...and the file is neither tagged nor removed
    assert real.get_object_tagging(Bucket=LANDING, Key=f"{name}.fits.fz")["TagSet"] == []
