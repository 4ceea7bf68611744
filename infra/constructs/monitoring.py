"""Alarms (to one SNS topic) and a small dashboard of the ingest metrics.

The outcome alarms (rejected files, system faults, skipped objects, audit inconsistencies) watch a
Metrics Insights query summing the metric over the namespace, whatever dimensions it is emitted with
(`FilesRejected` and `SystemFaults` by `reason`): a new reason, or a dimension added later, is counted
without touching the alarm. Thresholds come from cdk context.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants as c
from infra.config import IngestConfig

PERIOD = Duration.minutes(5)


def namespace_total(metric_name: str, period: Duration = PERIOD) -> cloudwatch.MathExpression:
    """The metric summed over every dimension set it has in the namespace (a Metrics Insights query)."""
    return cloudwatch.MathExpression(
        expression=f'SELECT SUM({metric_name}) FROM "{c.METRICS_NAMESPACE}"', label=metric_name, period=period
    )


def ingest_metric(name: str, statistic: str = "Sum", label: str | None = None) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=c.METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map=c.METRIC_DIMENSIONS,
        statistic=statistic,
        period=PERIOD,
        label=label or name,
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        config: IngestConfig,
        *,
        function: lambda_.IFunction,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        audit_function: lambda_.IFunction | None = None,
        publishes_events: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        # No KMS key: CloudWatch cannot publish to a topic under the AWS-managed SNS key, and alarm
        # notifications carry alarm names only.
        self.topic = sns.Topic(self, c.ALARM_TOPIC_ID, display_name="lambda_ingest alarms", enforce_ssl=True)
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        self.alarms = {
            "DeadLetterQueueNotEmpty": self._alarm(
                "DeadLetterQueueNotEmpty",
                "Ingest messages gave up after max_receive_count tries: see docs/deploy.md "
                "'Redrive the dead-letter queue'.",
                dead_letter_queue.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=Duration.minutes(1)
                ),
                1,
                at_least=True,
            ),
            "OldestMessageAge": self._alarm(
                "OldestMessageAge",
                "Uploads wait too long: the function is failing, throttled or capped by max_concurrency.",
                queue.metric_approximate_age_of_oldest_message(statistic="Maximum", period=PERIOD),
                config.oldest_message_alarm_minutes * 60,
            ),
            "FunctionErrors": self._alarm(
                "FunctionErrors",
                "Whole invocations failed (crash, timeout, bad configuration); per-file "
                "failures are reported to SQS, not counted here.",
                function.metric_errors(statistic="Sum", period=PERIOD),
                1,
                at_least=True,
            ),
            "FunctionThrottles": self._alarm(
                "FunctionThrottles",
                "The function was throttled (account concurrency exhausted).",
                function.metric_throttles(statistic="Sum", period=PERIOD),
                1,
                at_least=True,
            ),
            "FilesRejected": self._outcome_alarm(
                c.REJECTED_METRIC,
                config.rejected_alarm_threshold,
                "More files than usual were rejected (kept in the landing bucket, tagged ingest-status=rejected "
                "with ingest-reason): check the uploads and the dashboard's 'Rejected, by reason'.",
            ),
            "SystemFaults": self._outcome_alarm(
                c.SYSTEM_FAULT_METRIC,
                config.system_fault_alarm_threshold,
                "A fault of the system (token, API_ROOT, bucket, credentials, configuration): records are "
                "retried, then dead-lettered; the function's error log names the cause (docs/reliability.md).",
            ),
            "FilesSkipped": self._outcome_alarm(
                c.SKIPPED_METRIC,
                config.skipped_alarm_threshold,
                "Landing objects were gone or replaced before they were processed: check who deletes or "
                "overwrites uploads.",
            ),
        }
        if publishes_events:
            self.alarms["EventPublishFailures"] = self._outcome_alarm(
                c.EVENT_PUBLISH_FAILURES_METRIC,
                0,
                "Outcome events were not published (best effort: the files themselves were ingested); the "
                "function's warning log names the EventBridge error, e.g. a missing events:PutEvents.",
            )
        if audit_function is not None:
            self.alarms["AuditIncomplete"] = self._outcome_alarm(
                c.AUDIT_INCOMPLETE_METRIC,
                0,
                "The scheduled audit reached its time limit before covering everything: narrow it with a "
                "prefix in the schedule's input, or run `lambda-ingest audit` from a workstation.",
                period=Duration.hours(1),
            )
            self.alarms["AuditInconsistencies"] = self._outcome_alarm(
                c.AUDIT_METRIC,
                0,
                "The scheduled audit found the landing bucket, archive bucket and archive API disagreeing: run "
                "`lambda-ingest audit` for the report (docs/operations.md).",
                period=Duration.hours(1),
            )
            self.alarms["AuditErrors"] = self._alarm(
                "AuditErrors",
                "The scheduled audit failed to run to the end: its log names the cause.",
                audit_function.metric_errors(statistic="Sum", period=PERIOD),
                1,
                at_least=True,
            )
        action = cw_actions.SnsAction(self.topic)
        for alarm in self.alarms.values():
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)

        self.dashboard = self._dashboard(function, queue, dead_letter_queue)

    def _outcome_alarm(
        self, metric_name: str, threshold: int, description: str, period: Duration = PERIOD
    ) -> cloudwatch.Alarm:
        return self._alarm(metric_name, description, namespace_total(metric_name, period), threshold)

    def _alarm(
        self, alarm_id: str, description: str, metric: cloudwatch.IMetric, threshold: float, at_least: bool = False
    ) -> cloudwatch.Alarm:
        """One evaluation period; no data is not a breach (an idle ingest is healthy)."""
        op = cloudwatch.ComparisonOperator
        return cloudwatch.Alarm(
            self,
            alarm_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=op.GREATER_THAN_OR_EQUAL_TO_THRESHOLD if at_least else op.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _dashboard(
        self, function: lambda_.IFunction, queue: sqs.IQueue, dead_letter_queue: sqs.IQueue
    ) -> cloudwatch.Dashboard:
        # FilesRejected exists only per reason: SEARCH finds every reason, SUM gives the total.
        search = (
            f"SEARCH('{{{c.METRICS_NAMESPACE},{c.REJECTED_REASON_DIMENSION},service}} "
            f"MetricName=\"{c.REJECTED_METRIC}\"', 'Sum', {int(PERIOD.to_seconds())})"
        )
        rejected_by_reason = cloudwatch.MathExpression(expression=search, label="", period=PERIOD)
        rejected_total = cloudwatch.MathExpression(expression=f"SUM({search})", label=c.REJECTED_METRIC, period=PERIOD)
        dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.days(1))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Files",
                left=[
                    *(ingest_metric(name) for name in c.COUNT_METRICS),
                    rejected_total,
                    namespace_total(c.SYSTEM_FAULT_METRIC),
                    namespace_total(c.SKIPPED_METRIC),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(title="Rejected, by reason", left=[rejected_by_reason], width=12),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Bytes",
                left=[ingest_metric(name) for name in c.BYTES_METRICS],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Ingest lag (upload to registered), s",
                left=[
                    ingest_metric(c.LAG_METRIC, stat, f"{c.LAG_METRIC} {stat}") for stat in ("p50", "p99", "Maximum")
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Step durations p99, ms",
                left=[ingest_metric(name, "p99", f"{name} p99") for name in c.DURATION_METRICS],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Queues",
                left=[
                    queue.metric_approximate_number_of_messages_visible(label="ingest visible", period=PERIOD),
                    dead_letter_queue.metric_approximate_number_of_messages_visible(label="DLQ visible", period=PERIOD),
                ],
                right=[queue.metric_approximate_age_of_oldest_message(label="oldest message, s", period=PERIOD)],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Function",
                left=[
                    function.metric_invocations(period=PERIOD),
                    function.metric_errors(period=PERIOD),
                    function.metric_throttles(period=PERIOD),
                ],
                right=[function.metric_duration(statistic="p99", period=PERIOD, label="duration p99")],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(alarms=list(self.alarms.values()), title="Alarms", width=24),
        )
        return dashboard
