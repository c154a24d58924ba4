"""The overview and per-workflow dashboards: runs, durations, queue, admission, events."""

from __future__ import annotations

from deploy.grafana.model import FAILED, RATE, Dashboard, Panel, Query, Row, quantiles

OVERVIEW = Dashboard(
    uid="ingestion-overview",
    title="Ingestion platform / Overview",
    description="Runs, durations, queue and admission, and the events relay of the platform.",
    rows=(
        Row(
            "Runs",
            (
                Panel(
                    "Runs started by workflow",
                    "Runs an engine started (admitted PENDING to RUNNING), per second.",
                    (
                        Query(
                            f"sum by (type) (rate(workflow_runs_started_total[{RATE}]))",
                            "{{type}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Runs finished by workflow and status",
                    "Runs reaching a terminal status, per second: succeeded, and failed "
                    "(FAILED, COMPENSATED, COMPENSATION_FAILED).",
                    (
                        Query(
                            "sum by (type) (rate(workflows_executed_total"
                            f'{{status="SUCCEEDED"}}[{RATE}]))',
                            "{{type}} succeeded",
                        ),
                        Query(
                            f"sum by (type, status) (rate(workflows_executed_total{{{FAILED}}}"
                            f"[{RATE}]))",
                            "{{type}} {{status}}",
                            data=False,
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Run duration",
                    "p50, p95 and p99 of the wall time from start to terminal status.",
                    quantiles("workflow_execution_duration_seconds"),
                    unit="s",
                ),
                Panel(
                    "Failed-run ratio",
                    "Failed runs over finished runs in the dashboard's time range (the "
                    "IngestionFailedRunRatioHigh alert looks at 15 minutes).",
                    (
                        Query(
                            f"(sum(increase(workflows_executed_total{{{FAILED}}}[$__range])) "
                            "or vector(0)) / sum(increase(workflows_executed_total[$__range]))",
                            "failed",
                        ),
                    ),
                    unit="percentunit",
                    kind="stat",
                ),
            ),
        ),
        Row(
            "Queue and admission",
            (
                Panel(
                    "Queue size",
                    "workflow_queue_size: ready steps, due retries, admitted runs not started "
                    "and runs waiting for admission; the engine backlog leaves the waiting "
                    "runs out.",
                    (
                        Query("max(workflow_queue_size)", "queue"),
                        Query("max(workflow_engine_backlog)", "engine backlog"),
                    ),
                ),
                Panel(
                    "Active runs",
                    "Runs PENDING, RUNNING or COMPENSATING.",
                    (Query("max(active_workflows)", "active"),),
                ),
                Panel(
                    "Admission waits by reason",
                    "Runs waiting for admission, by the policy holding them back "
                    "(overall_cap, workflow_cap, manager_cap, host_paused, host_cap, "
                    "host_rate_limit, backpressure).",
                    (
                        Query(
                            "sum by (reason) (max by (type, reason) (admission_waiting_runs))",
                            "{{reason}}",
                            data=False,
                        ),
                    ),
                ),
                Panel(
                    "Engine claims",
                    "Step attempts claimed and runs started by the engines, per second; "
                    "IngestionNoEngineClaiming fires when both stay at 0 with a backlog.",
                    (
                        Query(f"sum(rate(workflow_steps_claimed_total[{RATE}]))", "steps"),
                        Query(f"sum(rate(workflow_runs_started_total[{RATE}]))", "runs"),
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Events and schedules",
            (
                Panel(
                    "Events relay lag",
                    "Age of the oldest event in the outbox not yet published to Redis Streams.",
                    (Query("max(events_relay_lag_seconds)", "lag"),),
                    unit="s",
                ),
                Panel(
                    "Events relay active",
                    "1 while some process holds the outbox relay lock.",
                    (Query("max(events_relay_active)", "active"),),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Schedule fire lag",
                    "How late each enabled schedule's next fire is (0 until it is due).",
                    (
                        Query(
                            "max by (schedule) (schedule_fire_lag_seconds)",
                            "{{schedule}}",
                            data=False,
                        ),
                    ),
                    unit="s",
                    width=18,
                ),
            ),
        ),
    ),
)

WORKFLOW = Dashboard(
    uid="ingestion-workflow",
    title="Ingestion platform / Workflow",
    description="One workflow type (the `type` label: the spec's kind) at a time.",
    workflow_variable=True,
    rows=(
        Row(
            "Runs of $workflow",
            (
                Panel(
                    "Runs started",
                    "Runs of the workflow an engine started, per second.",
                    (
                        Query(
                            "sum by (type) (rate(workflow_runs_started_total"
                            f'{{type=~"$workflow"}}[{RATE}]))',
                            "{{type}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Runs finished by status",
                    "Terminal statuses of the workflow's runs, per second.",
                    (
                        Query(
                            "sum by (status) (rate(workflows_executed_total"
                            f'{{type=~"$workflow"}}[{RATE}]))',
                            "{{status}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Run duration",
                    "p50, p95 and p99 of the workflow's run durations, and the mean.",
                    (
                        *quantiles(
                            "workflow_execution_duration_seconds",
                            selector='{type=~"$workflow"}',
                        ),
                        Query(
                            "sum(rate(workflow_execution_duration_seconds_sum"
                            f'{{type=~"$workflow"}}[{RATE}])) / '
                            "sum(rate(workflow_execution_duration_seconds_count"
                            f'{{type=~"$workflow"}}[{RATE}]))',
                            "mean",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Success ratio",
                    "Succeeded runs over finished runs in the time range.",
                    (
                        Query(
                            "sum(increase(workflows_executed_total"
                            '{type=~"$workflow", status="SUCCEEDED"}[$__range])) / '
                            'sum(increase(workflows_executed_total{type=~"$workflow"}'
                            "[$__range]))",
                            "succeeded",
                        ),
                    ),
                    unit="percentunit",
                    kind="stat",
                ),
                Panel(
                    "Waiting for admission",
                    "The workflow's runs held back by a policy, by reason.",
                    (
                        Query(
                            'max by (reason) (admission_waiting_runs{type=~"$workflow"})',
                            "{{reason}}",
                            data=False,
                        ),
                    ),
                    width=24,
                ),
            ),
        ),
    ),
)
