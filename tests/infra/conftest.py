"""CDK test fixtures: each stack variant is synthesised once per session, with source-only bundling (no pip).

A synth costs seconds (jsii and Node), so tests share module-independent session fixtures and read the
template and the cdk-nag messages from that one synthesis.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# `infra` is a top-level package of the repository, not an installed one.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
# jsii prints a banner on stderr for every Node release it considers end-of-life; it says nothing about us.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


if TYPE_CHECKING:
    from aws_cdk.assertions import Annotations, Template

    from infra.stack import IngestStack


IMPORTED_LANDING = "ocs-landing-existing"
IMPORTED_ARCHIVE = "ocs-archive-existing"
IMPORTED_SECRET_ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:archive/token-AbCdEf"

# Everything that is not a default, in one synth: imported buckets and secret, filters, tuning, pass-through.
IMPORTED_CONTEXT: dict[str, Any] = {
    "existing_landing_bucket": IMPORTED_LANDING,
    "existing_archive_bucket": IMPORTED_ARCHIVE,
    "token_secret_arn": IMPORTED_SECRET_ARN,
    "api_root": "https://archive-api.example.org/",
    "landing_prefix": "incoming/",
    "landing_suffixes": ".fits.fz,.fits,.tar.gz",  # as `-c` gives it: one string
    "batch_size": "50",
    "batching_window_seconds": "10",
    "max_concurrency": "3",
    "max_receive_count": "7",
    "memory_mb": "2048",
    "max_object_gib": "2",
    "days_to_ia": "90",
    "process_name": "ingester-west",
    "keep_landing_object": "true",
    "opentsdb_hostname": "tsdb.example.org",
    "archive_env": json.dumps(
        {"REQUIRED_HEADERS": ["PROPID", "DATE-OBS"], "OBSERVATION_DATE_KEY": "DATE-OBS", "DAYS_UNTIL_PUBLIC": 30}
    ),
    "alarm_email": "ops@example.org",
    "rejected_alarm_threshold": "25",
    # Issue 15: the account's default bus, the example rule to a queue, the scheduled audit.
    "event_bus": "default",
    "archived_frames_queue": "true",
    "audit_schedule": "rate(1 day)",
}
# Landing-bucket options that only apply to a bucket the stack creates.
NAMED_CONTEXT: dict[str, Any] = {
    "landing_bucket_name": "ocs-landing-new",
    "archive_bucket_name": "ocs-archive-new",
    "rejected_expiry_days": 30,
    "event_bus": "none",
    "snapstart": "false",
    "nag": False,  # the default and imported variants carry the cdk-nag checks
}


@dataclass(frozen=True)
class Synth:
    stack: IngestStack
    template: Template
    json: dict[str, Any]
    annotations: Annotations | None
    outdir: Path
    context: Mapping[str, Any]

    def resources(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == cfn_type}

    def only(self, cfn_type: str) -> dict[str, Any]:
        found = list(self.resources(cfn_type).values())
        assert len(found) == 1, f"expected one {cfn_type}, found {len(found)}"
        return found[0]


def synthesise(overrides: Mapping[str, Any], outdir: Path) -> Synth:
    if shutil.which("node") is None:
        pytest.skip("the CDK tests need node (jsii runs aws-cdk-lib in it)")
    pytest.importorskip("aws_cdk", reason="the CDK tests need the project's `infra` extra")
    pytest.importorskip("cdk_nag", reason="the CDK tests need the project's `infra` extra")
    from aws_cdk.assertions import Annotations, Template

    from infra.app import build_app, cdk_json_context

    context = {**cdk_json_context(), "bundling": "source", **overrides}
    app, stack = build_app(context, outdir=str(outdir))
    try:
        # One synthesis: Annotations forces it; app.synth() then returns the same cached assembly.
        annotations = Annotations.from_stack(stack) if context.get("nag", True) else None
        assembly = app.synth()
    except RuntimeError as exc:  # cdk-nag errors fail synthesis; show the report, not just its path
        report = outdir / "validation-report.json"
        detail = report.read_text()[:6000] if report.exists() else ""
        pytest.fail(f"synthesis failed: {exc}\n{detail}")
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    template_json = artifact.template
    return Synth(stack, Template.from_json(template_json), template_json, annotations, outdir, context)


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    yield synthesise({}, tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def imported_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    yield synthesise(IMPORTED_CONTEXT, tmp_path_factory.mktemp("cdk-imported"))


@pytest.fixture(scope="session")
def named_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    yield synthesise(NAMED_CONTEXT, tmp_path_factory.mktemp("cdk-named"))
