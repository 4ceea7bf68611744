"""`lambda-ingest backfill --manifest ...`: the S3 Batch Operations job over a manifest.

moto has no S3 Batch Operations (s3control CreateJob), so the request is checked against botocore's model of
the real CreateJob API, the printed `aws s3control create-job` command is parsed back, and the create path
is checked with botocore's Stubber (which validates the parameters against the same model).
"""

from __future__ import annotations

import json
import shlex

import pytest
from botocore.validate import ParamValidator

from lambda_ingest.cli import main
from lambda_ingest.local.stack import LANDING_BUCKET

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:lambda-ingest"
ROLE = "arn:aws:iam::123456789012:role/lambda-ingest-batch-operations"


def create_job_shape():
    from lambda_ingest import clients

    return clients.client("s3control").meta.service_model.operation_model("CreateJob").input_shape


def options(command: str) -> dict[str, str]:
    words = shlex.split(command)
    assert words[:3] == ["aws", "s3control", "create-job"]
    found, rest = {}, words[3:]
    while rest:
        flag = rest.pop(0)
        found[flag] = rest.pop(0) if rest and not rest[0].startswith("--") else ""
    return found


def backfill(manifest: str, *extra: str) -> int:
    return main(
        ["backfill", "--manifest", manifest, "--function-arn", FUNCTION, "--role-arn", ROLE, "--report",
         f"s3://{LANDING_BUCKET}/reports/", *extra]
    )  # fmt: skip


def test_print_gives_the_exact_create_job_command_for_a_csv_manifest(stack, in_process, capsys) -> None:
    # Given a CSV manifest of bucket,key,version lines in S3
    s3 = stack.client("s3")
    body = f"{LANDING_BUCKET},raw/a.fits.fz,v1\n{LANDING_BUCKET},raw/b.fits.fz,v2\n"
    etag = s3.put_object(Bucket=LANDING_BUCKET, Key="manifests/night.csv", Body=body.encode())["ETag"].strip('"')
    # When the backfill is only printed
    assert backfill(f"s3://{LANDING_BUCKET}/manifests/night.csv", "--print") == 0
    # Then one aws CLI command names the function, the role, the manifest pinned to its ETag and 3 columns
    found = options(capsys.readouterr().out)
    assert found["--account-id"] == "123456789012"  # the caller's account (STS)
    assert json.loads(found["--operation"]) == {
        "LambdaInvoke": {"FunctionArn": FUNCTION, "InvocationSchemaVersion": "2.0"}
    }
    manifest = json.loads(found["--manifest"])
    assert manifest["Spec"] == {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]}
    assert manifest["Location"] == {
        "ObjectArn": f"arn:aws:s3:::{LANDING_BUCKET}/manifests/night.csv",
        "ETag": etag,
    }
    report = json.loads(found["--report"])
    assert report == {
        "Bucket": f"arn:aws:s3:::{LANDING_BUCKET}",
        "Prefix": "reports",
        "Format": "Report_CSV_20180820",
        "Enabled": True,
        "ReportScope": "AllTasks",
    }
    assert found["--role-arn"] == ROLE and "--no-confirmation-required" in found
    # And the same parameters are a valid CreateJob request by the real API's model
    request = {
        "AccountId": found["--account-id"],
        "Operation": json.loads(found["--operation"]),
        "Manifest": manifest,
        "Report": report,
        "Priority": int(found["--priority"]),
        "RoleArn": found["--role-arn"],
        "ClientRequestToken": found["--client-request-token"],
        "ConfirmationRequired": False,
    }
    validation = ParamValidator().validate(request, create_job_shape())
    assert not validation.has_errors(), validation.generate_report()


def test_an_inventory_manifest_is_named_as_such(stack, in_process, capsys) -> None:
    # Given an S3 Inventory report's manifest.json
    s3 = stack.client("s3")
    s3.put_object(Bucket=LANDING_BUCKET, Key="inventory/2026-12-01T00-00Z/manifest.json", Body=b"{}")
    # When printed
    assert backfill(f"s3://{LANDING_BUCKET}/inventory/2026-12-01T00-00Z/manifest.json", "--print") == 0
    # Then the job reads it as an S3 Inventory report (its columns come from the inventory's schema)
    manifest = json.loads(options(capsys.readouterr().out)["--manifest"])
    assert manifest["Spec"] == {"Format": "S3InventoryReport_CSV_20161130"}


def test_a_csv_with_the_wrong_columns_or_a_missing_manifest_is_refused(stack, in_process, capsys) -> None:
    # Given a CSV with four columns
    s3 = stack.client("s3")
    s3.put_object(Bucket=LANDING_BUCKET, Key="manifests/bad.csv", Body=b"a,b,c,d\n")
    # When a backfill is asked for it, or for a manifest that does not exist
    assert backfill(f"s3://{LANDING_BUCKET}/manifests/bad.csv", "--print") == 1
    assert "2 (bucket,key) or 3 (bucket,key,version) columns" in capsys.readouterr().err
    assert backfill(f"s3://{LANDING_BUCKET}/manifests/none.csv", "--print") == 1
    # Then nothing is printed on stdout, only the reason on stderr
    captured = capsys.readouterr()
    assert captured.out == "" and "manifests/none.csv" in captured.err


def test_without_print_the_job_is_created_and_its_id_printed(stack, in_process, capsys) -> None:
    from botocore.stub import ANY, Stubber

    from lambda_ingest import clients

    # Given a CSV manifest, and S3 Batch Operations (moto lacks it: botocore's Stubber, checked by the model)
    s3 = stack.client("s3")
    put = s3.put_object(Bucket=LANDING_BUCKET, Key="manifests/two.csv", Body=f"{LANDING_BUCKET},raw/a.fits\n".encode())
    s3control = clients.client("s3control")
    expected = {
        "AccountId": "123456789012",
        "ConfirmationRequired": False,
        "Operation": {"LambdaInvoke": {"FunctionArn": FUNCTION, "InvocationSchemaVersion": "2.0"}},
        "Report": ANY,
        "ClientRequestToken": ANY,
        "Manifest": {
            "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
            "Location": {
                "ObjectArn": f"arn:aws:s3:::{LANDING_BUCKET}/manifests/two.csv",
                "ETag": put["ETag"].strip('"'),
            },
        },
        "Priority": 10,
        "RoleArn": ROLE,
        "Description": "lambda_ingest backfill",
    }
    with Stubber(s3control) as stub:
        stub.add_response("create_job", {"JobId": "11111111-2222-3333-4444-555555555555"}, expected)
        # When the backfill is run without --print
        code = backfill(f"s3://{LANDING_BUCKET}/manifests/two.csv")
        stub.assert_no_pending_responses()
    # Then the job was created with those parameters and its id printed (how to follow it on stderr)
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out == "11111111-2222-3333-4444-555555555555\n"
    assert "aws s3control describe-job" in captured.err


@pytest.mark.parametrize("missing", ["--manifest", "--function-arn", "--role-arn", "--report"])
def test_every_required_flag_is_required(missing, in_process, capsys) -> None:
    argv = ["backfill", "--manifest", "s3://b/m.csv", "--function-arn", FUNCTION, "--role-arn", ROLE,
            "--report", "s3://b/r"]  # fmt: skip
    i = argv.index(missing)
    with pytest.raises(SystemExit) as exit_info:
        main(argv[:i] + argv[i + 2 :])
    assert exit_info.value.code == 2
    assert missing in capsys.readouterr().err
