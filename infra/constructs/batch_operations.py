"""The role S3 Batch Operations assumes to run a backfill through the ingest function (docs/operations.md).

A job (`lambda-ingest backfill --manifest ...`) invokes the function's `live` alias once per object of its
manifest, reads the manifest and writes its completion report under `batch_operations_prefix` in the
landing bucket. The role can do exactly that; the function reads the objects with its own role.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import IngestConfig
from infra.nag import suppress


class BatchOperationsRole(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, config: IngestConfig, *, alias: lambda_.IAlias, landing: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = config.batch_operations_prefix
        self.role = iam.Role(
            self,
            "Role",
            # The trust policy of AWS's own examples (S3 user guide, "Granting permissions for Batch
            # Operations"): the service principal alone; who may pass the role is iam:PassRole's business.
            assumed_by=iam.ServicePrincipal("batchoperations.s3.amazonaws.com"),
            description="lambda_ingest: S3 Batch Operations invokes the ingest alias, reads manifests, writes reports",
        )
        # The alias ARN only (not `function:*`): a job runs the published, SnapStart-enabled version.
        self.role.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[alias.function_arn]))
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                resources=[landing.arn_for_objects(f"{prefix}*")],
            )
        )
        self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetBucketLocation"], resources=[landing.bucket_arn]))
        suppress(
            self.role,
            "IAM5",
            f"Manifests and completion reports are named per job under the landing bucket's {prefix!r} prefix; "
            "the role reaches nothing outside it.",
            applies_to=[_prefix_finding(landing, prefix)],
            children=True,
        )


def _prefix_finding(bucket: s3.IBucket, prefix: str) -> str:
    cfn = bucket.node.default_child
    if isinstance(cfn, s3.CfnBucket):
        return f"Resource::<{Stack.of(bucket).get_logical_id(cfn)}.Arn>/{prefix}*"
    return f"Resource::arn:<AWS::Partition>:s3:::{bucket.bucket_name}/{prefix}*"
