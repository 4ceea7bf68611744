"""CDK app for lambda_ingest: `cdk.json` at the repository root runs `infra.app`."""
