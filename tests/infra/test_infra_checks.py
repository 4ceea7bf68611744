"""What an operator sees before deploying: cfn-lint on the synthesised templates, and one-line context errors.

cfn-lint lints the templates the session already synthesised (default context, and imported buckets and
secret with the optional issue-15 resources): zero errors and zero warnings is the gate, except W3005,
which CDK itself causes (it writes an explicit DependsOn beside a GetAtt, e.g. a function on its role).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.infra

REPO_ROOT = Path(__file__).resolve().parents[2]
# W3005 "dependency already enforced by a GetAtt": every finding is a DependsOn CDK generates (the
# bucket-notification helper on the queue policy, each function on its role's default policy).
CFN_LINT_IGNORED = ["W3005"]


@pytest.mark.parametrize("variant", ["default_synth", "imported_synth"])
def test_cfn_lint_finds_no_error_or_warning(variant: str, request: pytest.FixtureRequest) -> None:
    api = pytest.importorskip("cfnlint.api", reason="cfn-lint comes with the project's `infra` extra")
    synth = request.getfixturevalue(variant)

    matches = api.lint(
        json.dumps(synth.json),
        config=api.ManualArgs(regions=["us-east-1", "us-west-2"], ignore_checks=CFN_LINT_IGNORED),
    )

    findings = [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id[0] in "EW"]
    assert findings == []


def run_app(context: dict[str, Any], outdir: Path) -> subprocess.CompletedProcess[str]:
    """The app as the CDK CLI runs it: cdk.json's `app` command in a shell, context in CDK_CONTEXT_JSON."""
    from infra.app import CDK_JSON, cdk_json_context

    # cdk.json names the project venv's interpreter; this test runs in whichever venv pytest runs in.
    command = json.loads(CDK_JSON.read_text())["app"].replace(".venv/bin/python", sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSII_")}  # cdk.json must silence jsii
    env |= {
        "CDK_CONTEXT_JSON": json.dumps({**cdk_json_context(), **context}),
        "CDK_OUTDIR": str(outdir),
        "PYTHONPATH": str(REPO_ROOT),
    }
    return subprocess.run(command, shell=True, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_bad_context_prints_one_line_naming_the_key_and_exits_2(tmp_path: Path) -> None:
    pytest.importorskip("aws_cdk", reason="the CDK tests need the project's `infra` extra")

    result = run_app({"max_concurrency": "1"}, tmp_path)  # as `npx aws-cdk@2 synth -c max_concurrency=1`

    assert result.returncode == 2
    assert result.stderr.splitlines() == [  # no traceback, no jsii banner
        "lambda_ingest: context 'max_concurrency' must be between 2 and 1000, got 1 "
        "(cdk context: -c KEY=VALUE or cdk.json; docs/deploy.md)"
    ]
    assert not (tmp_path / "manifest.json").exists()  # nothing synthesised


def test_the_app_refuses_a_misspelled_key_among_cdks_own() -> None:
    pytest.importorskip("aws_cdk", reason="the CDK tests need the project's `infra` extra")
    from infra.app import build_app, cdk_json_context
    from infra.config import ConfigError

    # cdk.json's feature flags and the keys the CLI adds are CDK's; only the project's plain keys are checked.
    context = {**cdk_json_context(), "aws:cdk:enable-path-metadata": True, "max_concurency": "50"}
    with pytest.raises(ConfigError, match=r"^unknown context key 'max_concurency': did you mean 'max_concurrency'\?$"):
        build_app(context)
