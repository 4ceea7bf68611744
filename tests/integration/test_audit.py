"""`lambda-ingest audit` and the scheduled audit, with each kind of inconsistency planted.

moto S3 (in-process, 32-character version ids) and the archive emulator on loopback; frames are ingested by
the real engine first, then one thing at a time is broken the way it breaks in life.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from lambda_ingest.cli import main
from lambda_ingest.events import ObjectRef
from lambda_ingest.ingest import ingest_object
from lambda_ingest.outcomes import processor
from tests.conftest import ARCHIVE, LANDING
from tests.integration.test_handler import bad_frame, frame

DAY = "20151219"


def name(seq: int, day: str = DAY) -> str:
    return f"cpt1m010-kb70-{day}-{seq:04d}-e00"


def key_of(basename: str, day: str = DAY) -> str:
    return f"cpt/kb70/{day}/raw/{basename}.fits.fz"


def ingest(s3: Any, basename: str) -> Any:
    s3.put_object(Bucket=LANDING, Key=f"raw/{basename}.fits.fz", Body=frame(basename))
    return ingest_object(LANDING, f"raw/{basename}.fits.fz")


def audit(*args: str) -> int:
    return main(["audit", "--landing-bucket", LANDING, *args])


def findings(stdout: str) -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            found.setdefault(parts[0], []).append(parts[1:])
    return found


@pytest.fixture
def planted(s3, archive_api) -> dict[str, str]:
    """A consistent archive of three frames, then one inconsistency of every kind (and a rejected file)."""
    for seq in (1, 2, 3):
        ingest(s3, name(seq))
    # stale: uploaded, its notification lost
    s3.put_object(Bucket=LANDING, Key=f"raw/{name(10)}.fits.fz", Body=frame(name(10)))
    # rejected: a file without DAY-OBS, tagged by the handler's path
    s3.put_object(Bucket=LANDING, Key="raw/bad.fits.fz", Body=bad_frame(name(11)))
    processor().process(ObjectRef(LANDING, "raw/bad.fits.fz"))
    # orphan: a copy whose registration never happened (this project's copy: md5 metadata), and a foreign one
    orphan_bytes = frame(name(12))
    orphan = s3.put_object(
        Bucket=ARCHIVE,
        Key=key_of(name(12)),
        Body=orphan_bytes,
        Metadata={"md5": hashlib.md5(orphan_bytes).hexdigest()},
    )["VersionId"]
    foreign = s3.put_object(Bucket=ARCHIVE, Key=key_of(name(13)), Body=b"not ours")["VersionId"]
    # missing: frame 2's archive object deleted behind the archive's back
    [registered_2] = [v for v in archive_api.versions() if v["basename"] == name(2)]
    s3.delete_object(Bucket=ARCHIVE, Key=key_of(name(2)), VersionId=registered_2["key"])
    # md5 mismatch: the archive's md5 of frame 3 no longer matches its object
    archive_api.set_md5(name(3), "0" * 32)
    return {"orphan": orphan, "foreign": foreign, "missing": registered_2["key"]}


def test_a_consistent_archive_exits_0(s3, archive_api, capsys) -> None:
    # Given frames ingested by the engine and nothing else
    for seq in (1, 2):
        ingest(s3, name(seq))
    # When audited
    code = audit("--stale-after", "0")
    # Then nothing is reported and the verdict is consistent
    out = capsys.readouterr().out
    assert code == 0, out
    assert findings(out) == {}
    assert "consistent" in out.splitlines()[-1] and "2 api versions" in out and "2 bucket versions" in out


def test_every_planted_inconsistency_is_found_and_the_exit_code_says_so(planted, s3, tmp_path, capsys) -> None:
    report_path = tmp_path / "audit.json"
    # When the whole archive is audited (landing objects count as stale at once)
    code = audit("--stale-after", "0", "--json", str(report_path))
    out = capsys.readouterr().out
    # Then each planted inconsistency has its line
    found = findings(out)
    assert code == 1
    assert [row[0] for row in found["stale_landing"]] == [f"s3://{LANDING}/raw/{name(10)}.fits.fz"]
    assert [row[0] for row in found["rejected_landing"]] == [f"s3://{LANDING}/raw/bad.fits.fz"]
    assert "DAY-OBS" in found["rejected_landing"][0][1]
    orphans = {row[0]: row[1] for row in found["orphan_version"]}
    assert set(orphans) == {
        f"s3://{ARCHIVE}/{key_of(name(12))}?versionId={planted['orphan']}",
        f"s3://{ARCHIVE}/{key_of(name(13))}?versionId={planted['foreign']}",
    }
    assert "no md5 metadata" in orphans[f"s3://{ARCHIVE}/{key_of(name(13))}?versionId={planted['foreign']}"]
    assert [row[0] for row in found["missing_object"]] == [
        f"s3://{ARCHIVE}/{key_of(name(2))}?versionId={planted['missing']}"
    ]
    [mismatch] = found["md5_mismatch"]
    assert mismatch[0].startswith(f"s3://{ARCHIVE}/{key_of(name(3))}?versionId=")
    assert f"archive md5 {'0' * 32}" in mismatch[1]
    # And the summary table counts them; a dry run changed nothing
    assert "INCONSISTENT: 5" in out and "dry run" in out
    assert len(s3.list_object_versions(Bucket=ARCHIVE, Prefix=key_of(name(12)))["Versions"]) == 1
    # And the JSON report carries the same counts, the rejection reasons and examples
    report = json.loads(report_path.read_text())
    assert report["consistent"] is False and report["inconsistencies"] == 5
    assert report["counts"] == {
        "stale_landing": 1,
        "orphan_version": 2,
        "missing_object": 1,
        "md5_mismatch": 1,
        "rejected_landing": 1,
    }
    assert list(report["rejected_by_reason"]) == ["missing required header DAY-OBS"]
    assert report["scanned"]["api_versions"] == 3 and report["scanned"]["bucket_versions"] == 4

    # When audited again with --fix but the default thresholds (everything here is seconds old)
    code = audit("--fix")
    found = findings(capsys.readouterr().out)
    # Then landing objects are not yet stale, and the fresh orphan is reported but not deleted
    assert code == 1
    assert "stale_landing" not in found and "rejected_landing" not in found
    assert len(s3.list_object_versions(Bucket=ARCHIVE, Prefix=key_of(name(12)))["Versions"]) == 1
    assert any("too recent" in row[1] for row in found["orphan_version"])

    # And the report can go to stdout alone, for one check
    assert audit("--checks", "bucket", "--json", "-") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["orphan_version"] == 2 and report["options"]["checks"] == ["bucket"]


def test_fix_deletes_only_our_old_orphan_and_redrives_the_stale_object(planted, s3, archive_api, capsys) -> None:
    # When the audit is run with --fix (orphans count as old enough at once)
    code = audit("--stale-after", "0", "--min-age", "0", "--fix")
    out = capsys.readouterr().out
    found = findings(out)
    # Then our orphan is deleted; the foreign object (no md5 metadata) is left alone
    assert s3.list_object_versions(Bucket=ARCHIVE, Prefix=key_of(name(12))).get("Versions") is None
    assert len(s3.list_object_versions(Bucket=ARCHIVE, Prefix=key_of(name(13)))["Versions"]) == 1
    assert any("deleted" in row[1] for row in found["orphan_version"])
    # And the stale landing object went through the normal path: ingested, removed from the landing bucket
    assert "re-driven: ingested" in found["stale_landing"][0][1]
    assert name(10) in {v["basename"] for v in archive_api.versions()}
    assert f"raw/{name(10)}.fits.fz" not in [o["Key"] for o in s3.list_objects_v2(Bucket=LANDING).get("Contents", [])]
    # And what needs a person stays reported: exit 1 with 3 left (foreign orphan, missing, mismatch)
    assert code == 1 and "INCONSISTENT: 3" in out
    # And a second audit finds exactly those three
    assert audit("--stale-after", "0") == 1
    again = findings(capsys.readouterr().out)
    assert sorted((k, len(v)) for k, v in again.items()) == [
        ("md5_mismatch", 1),
        ("missing_object", 1),
        ("orphan_version", 1),
        ("rejected_landing", 1),
    ]


def test_prefix_and_since_narrow_the_audit(s3, archive_api, capsys) -> None:
    # Given two nights' frames whose objects are both missing
    gone = name(1)
    ingest(s3, gone)
    s3.delete_object(
        Bucket=ARCHIVE, Key=key_of(gone), VersionId=s3.list_object_versions(Bucket=ARCHIVE)["Versions"][0]["VersionId"]
    )
    other = name(1, day="20151220")
    ingest(s3, other)
    listing = s3.list_object_versions(Bucket=ARCHIVE, Prefix=key_of(other, day="20151220"))["Versions"]
    s3.delete_object(Bucket=ARCHIVE, Key=key_of(other, day="20151220"), VersionId=listing[0]["VersionId"])
    # When only the other night's prefix is audited (archive checks only)
    code = audit("--prefix", "cpt/kb70/20151220/", "--checks", "bucket,api")
    found = findings(capsys.readouterr().out)
    # Then only its missing object is reported
    assert code == 1
    assert list(found) == ["missing_object"] and key_of(other, day="20151220") in found["missing_object"][0][0]
    # And --since in the future leaves nothing to audit
    assert audit("--since", "2999-01-01", "--stale-after", "0") == 0
    assert findings(capsys.readouterr().out) == {}
    # And without narrowing both are found
    assert audit() == 1
    assert len(findings(capsys.readouterr().out)["missing_object"]) == 2


def test_bad_arguments_are_refused(s3, archive_api, capsys) -> None:
    assert audit("--checks", "everything") == 2
    assert "unknown everything" in capsys.readouterr().err
    assert audit("--since", "last tuesday") == 1
    assert "--since" in capsys.readouterr().err


def test_an_unreachable_archive_stops_the_audit_with_an_error(s3, archive_api, capsys) -> None:
    # Given an archive that refuses every request (a wrong token)
    archive_api.inject(status=401, count=100, method=None)
    ingest_free = s3.put_object(Bucket=ARCHIVE, Key=key_of(name(1)), Body=b"x")
    assert ingest_free["VersionId"]
    # When audited
    code = audit("--checks", "api,bucket")
    # Then it stops and says why; it does not claim the archive consistent
    captured = capsys.readouterr()
    assert code == 1 and "audit stopped" in captured.err and "401" in captured.err


def test_the_scheduled_audit_publishes_its_counts_as_metrics(planted, monkeypatch, capsys) -> None:
    from lambda_ingest.audit import handler
    from lambda_ingest.context import LocalContext
    from lambda_ingest.settings import reset_settings

    # Given the audit function's environment (LANDING_BUCKET, BUCKET)
    monkeypatch.setenv("LANDING_BUCKET", LANDING)
    reset_settings()
    capsys.readouterr()
    # When the schedule invokes it for the archive checks
    summary = handler({"checks": ["bucket", "api"]}, LocalContext())
    # Then it returns the counts and publishes them as EMF metrics, AuditInconsistencies their sum
    assert summary["consistent"] is False and summary["inconsistencies"] == 4
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values = {name: blob[name] for blob in blobs for name in blob if name.startswith("Audit")}
    assert values["AuditInconsistencies"] == 4.0 or values["AuditInconsistencies"] == [4.0]
    flat = {k: (v[0] if isinstance(v, list) else v) for k, v in values.items()}
    assert flat["AuditOrphanVersions"] == 2 and flat["AuditMissingObjects"] == 1
    assert flat["AuditMd5Mismatches"] == 1 and flat["AuditIncomplete"] == 0
