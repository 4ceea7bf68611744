"""CDK app entry: `cdk.json` runs `.venv/bin/python -m infra.app` from the repository root.

`build_app` is what the tests call too, with the same `cdk.json` context, so they check what deploys.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Aspects, Environment
from cdk_nag import AwsSolutionsChecks

from infra.config import ConfigError, check_known_keys, load_config
from infra.stack import IngestStack

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The `context` of cdk.json (feature flags and any project defaults the operator put there)."""
    return dict(json.loads(path.read_text()).get("context", {}))


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> tuple[App, IngestStack]:
    """The app with its one stack. `context=None` leaves context to the CDK CLI (cdk.json and `-c`)."""
    app = App(context=dict(context) if context is not None else None, outdir=outdir)
    # Everything the CLI passed (cdk.json, cdk.context.json, -c) and CDK's own keys, which are skipped.
    check_known_keys(app.node.get_all_context())
    config = load_config(app.node.try_get_context)
    env = None
    if os.environ.get("CDK_DEFAULT_ACCOUNT") and os.environ.get("CDK_DEFAULT_REGION"):
        # Set by the CDK CLI when credentials are present; without them the template is environment-agnostic.
        env = Environment(account=os.environ["CDK_DEFAULT_ACCOUNT"], region=os.environ["CDK_DEFAULT_REGION"])
    stack = IngestStack(app, config.stack_name, config, env=env)
    if config.nag:
        Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app, stack


def main() -> None:
    try:
        app, _ = build_app()
    except ConfigError as exc:
        # One line, no traceback: the CDK CLI shows the app's stderr as is, then its own exit line.
        print(f"lambda_ingest: {exc} (cdk context: -c KEY=VALUE or cdk.json; docs/deploy.md)", file=sys.stderr)
        sys.exit(2)
    app.synth()


if __name__ == "__main__":
    main()
