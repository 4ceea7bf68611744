"""`lambda-ingest backfill --manifest ...`: an S3 Batch Operations job that invokes the ingest function.

For millions of objects: S3 Batch Operations reads the manifest (a CSV `bucket,key[,version]` or an S3
Inventory `manifest.json`), invokes the function once per object (lambda_ingest.batch_operations answers)
and writes a completion report. This module builds the CreateJob request once; it is either sent through
s3control or printed as the exact `aws s3control create-job` command, so an operator can review it first.
boto3 is imported on use, not at import: cli.py builds its parser from `add_parser` on every start.
"""

from __future__ import annotations

import json
import shlex
import sys
import uuid
from typing import Any, TextIO

from lambda_ingest.errors import ConfigurationError, IngestError

CSV_FORMAT = "S3BatchOperations_CSV_20180820"
INVENTORY_FORMAT = "S3InventoryReport_CSV_20161130"
REPORT_FORMAT = "Report_CSV_20180820"
SCHEMA_VERSION = "2.0"  # takes the bucket name (not the ARN) and allows UserArguments; both are answered


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise ConfigurationError(f"expected s3://bucket/key, got {url!r}")
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def manifest_spec(bucket: str, key: str) -> dict[str, Any]:
    """The manifest's format and fields: S3 Inventory for a manifest.json, else a CSV of 2 or 3 columns."""
    if key.endswith("manifest.json"):
        return {"Format": INVENTORY_FORMAT}
    from lambda_ingest import clients

    # A CSV manifest names its columns by position: Bucket,Key or Bucket,Key,VersionId (read the first line).
    first = clients.s3().get_object(Bucket=bucket, Key=key, Range="bytes=0-4095")["Body"].read()
    line = first.decode("utf-8", "replace").splitlines()[0] if first.strip() else ""
    columns = len(line.split(","))
    if columns not in (2, 3):
        raise ConfigurationError(
            f"s3://{bucket}/{key}: a CSV manifest has 2 (bucket,key) or 3 (bucket,key,version) columns, "
            f"its first line has {columns}"
        )
    return {"Format": CSV_FORMAT, "Fields": ["Bucket", "Key", "VersionId"][:columns]}


def job_request(
    *,
    account_id: str,
    manifest: str,
    manifest_etag: str,
    spec: dict[str, Any],
    function_arn: str,
    role_arn: str,
    report: str,
    priority: int = 10,
    description: str = "lambda_ingest backfill",
    confirmation_required: bool = False,
    token: str | None = None,
) -> dict[str, Any]:
    """The CreateJob parameters (boto3 names)."""
    manifest_bucket, manifest_key = parse_s3_url(manifest)
    report_bucket, report_prefix = parse_s3_url(report)
    report_config: dict[str, Any] = {
        "Bucket": f"arn:aws:s3:::{report_bucket}",
        "Format": REPORT_FORMAT,
        "Enabled": True,
        "ReportScope": "AllTasks",  # successes too: the report then lists every object with its archive key
    }
    if report_prefix:
        report_config["Prefix"] = report_prefix.rstrip("/")
    return {
        "AccountId": account_id,
        "ConfirmationRequired": confirmation_required,
        "Operation": {"LambdaInvoke": {"FunctionArn": function_arn, "InvocationSchemaVersion": SCHEMA_VERSION}},
        "Report": report_config,
        "ClientRequestToken": token or str(uuid.uuid4()),
        "Manifest": {
            "Spec": spec,
            "Location": {"ObjectArn": f"arn:aws:s3:::{manifest_bucket}/{manifest_key}", "ETag": manifest_etag},
        },
        "Priority": priority,
        "RoleArn": role_arn,
        "Description": description,
    }


def cli_command(request: dict[str, Any]) -> str:
    """The same request as an `aws s3control create-job` command line (shell-quoted)."""
    parts = [
        "aws",
        "s3control",
        "create-job",
        "--account-id",
        request["AccountId"],
        "--operation",
        json.dumps(request["Operation"], separators=(",", ":")),
        "--manifest",
        json.dumps(request["Manifest"], separators=(",", ":")),
        "--report",
        json.dumps(request["Report"], separators=(",", ":")),
        "--priority",
        str(request["Priority"]),
        "--role-arn",
        request["RoleArn"],
        "--client-request-token",
        request["ClientRequestToken"],
        "--description",
        request["Description"],
        "--confirmation-required" if request["ConfirmationRequired"] else "--no-confirmation-required",
    ]
    return " ".join(shlex.quote(part) for part in parts)


def build_request(args: Any) -> dict[str, Any]:
    from lambda_ingest import clients, store

    bucket, key = parse_s3_url(args.manifest)
    head = store.head(bucket, key)  # the job pins the manifest's ETag: a changed manifest fails the job
    account_id = args.account_id or clients.client("sts").get_caller_identity()["Account"]
    return job_request(
        account_id=account_id,
        manifest=args.manifest,
        manifest_etag=head.etag,
        spec=manifest_spec(bucket, key),
        function_arn=args.function_arn,
        role_arn=args.role_arn,
        report=args.report,
        priority=args.priority,
        confirmation_required=args.confirm,
    )


def cmd_backfill(args: Any, out: TextIO) -> int:
    """Create the job (prints its id), or with --print only print the command that would create it."""
    from lambda_ingest import clients

    try:
        request = build_request(args)
        if args.print_only:
            out.write(cli_command(request) + "\n")
            return 0
        job_id = clients.client("s3control").create_job(**request)["JobId"]
    except IngestError as exc:
        sys.stderr.write(f"lambda-ingest: error: {exc}\n")
        return 1
    except Exception as exc:  # botocore's error names the refusal (role, function, manifest); show it as is
        sys.stderr.write(f"lambda-ingest: error: create-job failed: {exc}\n")
        return 1
    out.write(f"{job_id}\n")
    sys.stderr.write(
        f"created S3 Batch Operations job {job_id}; follow it with: aws s3control describe-job "
        f"--account-id {request['AccountId']} --job-id {job_id}\n"
    )
    return 0


def add_parser(sub: Any) -> Any:
    """The `backfill` subcommand's arguments (wired in cli.py)."""
    parser = sub.add_parser(
        "backfill",
        help="create an S3 Batch Operations job that runs every object of a manifest through the function",
        description="For millions of objects: create an S3 Batch Operations job (LambdaInvoke, schema 2.0) over "
        "a CSV manifest (bucket,key[,version]) or an S3 Inventory manifest.json; the function answers per "
        "object and the job writes a completion report. --print shows the aws CLI command instead.",
    )
    parser.add_argument("--manifest", required=True, metavar="s3://bucket/key", help="CSV or manifest.json")
    parser.add_argument("--function-arn", required=True, metavar="ARN", help="the deployed ingest function")
    parser.add_argument("--role-arn", required=True, metavar="ARN", help="the role S3 Batch Operations assumes")
    parser.add_argument(
        "--report", required=True, metavar="s3://bucket[/prefix]", help="where the completion report goes"
    )
    parser.add_argument("--account-id", help="the job's account (default: the caller's, from STS)")
    parser.add_argument("--priority", type=int, default=10, help="job priority (default 10)")
    parser.add_argument("--confirm", action="store_true", help="create the job suspended until confirmed")
    parser.add_argument(
        "--print", dest="print_only", action="store_true", help="print the aws s3control create-job command only"
    )
    return parser
