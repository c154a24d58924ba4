"""The agents and data-path dashboards: health, latencies, errors, circuits, datasets."""

from __future__ import annotations

from deploy.grafana.model import RATE, Dashboard, Panel, Query, Row, quantiles

AGENTS = Dashboard(
    uid="ingestion-agents",
    title="Ingestion platform / Agents",
    description="Health, action rates and latencies, errors, circuits and rate limits.",
    rows=(
        Row(
            "Health and traffic",
            (
                Panel(
                    "Agent health",
                    "The controller's last health check: 1 healthy, 0.5 degraded, 0 down.",
                    (Query("max by (agent) (agent_health_status)", "{{agent}}"),),
                ),
                Panel(
                    "Actions per second",
                    "Action requests each agent served, by action.",
                    (
                        Query(
                            f"sum by (agent, action) (rate(agent_actions_total[{RATE}]))",
                            "{{agent}} {{action}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Action latency p95 (in the agent)",
                    "Time in the action handler.",
                    (
                        Query(
                            "histogram_quantile(0.95, sum by (agent, action, le) "
                            f"(rate(agent_action_duration_seconds_bucket[{RATE}])))",
                            "{{agent}} {{action}}",
                        ),
                    ),
                    unit="s",
                ),
                Panel(
                    "Call latency p95 (seen by the engine)",
                    "The engine's calls to each agent, network included.",
                    (
                        Query(
                            "histogram_quantile(0.95, sum by (agent, le) "
                            f"(rate(agent_coordination_latency_seconds_bucket[{RATE}])))",
                            "{{agent}}",
                        ),
                    ),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Errors",
            (
                Panel(
                    "Errors by code",
                    "Actions answering an error, by agent and error code.",
                    (
                        Query(
                            f"sum by (agent, code) (rate(agent_action_errors_total[{RATE}]))",
                            "{{agent}} {{code}}",
                            data=False,
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Step attempts by outcome",
                    "Step attempts the engines finished, by agent and outcome.",
                    (
                        Query(
                            "sum by (agent, outcome) "
                            f"(rate(workflow_steps_executed_total[{RATE}]))",
                            "{{agent}} {{outcome}}",
                        ),
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Circuits and rate limits",
            (
                Panel(
                    "Open circuits",
                    "Source hosts the API manager holds runs back from after throttling or an "
                    "open circuit (1), and circuit_open answers of the agents.",
                    (
                        Query("max by (host) (api_host_paused)", "{{host}} paused", data=False),
                        Query(
                            "sum by (agent) (rate(agent_action_errors_total"
                            f'{{code="circuit_open"}}[{RATE}]))',
                            "{{agent}} circuit_open",
                            data=False,
                        ),
                    ),
                ),
                Panel(
                    "Rate limit use per host",
                    "Runs admitted per source host in the API manager's window, against its limit.",
                    (
                        Query(
                            "max by (host) (api_host_admissions_in_window)",
                            "{{host}}",
                            data=False,
                        ),
                        Query("max(api_host_rate_limit)", "limit"),
                    ),
                ),
            ),
        ),
    ),
)

DATA = Dashboard(
    uid="ingestion-data",
    title="Ingestion platform / Data path",
    description="Rows and bytes per dataset, and how long loads take.",
    rows=(
        Row(
            "Datasets",
            (
                Panel(
                    "Rows per dataset",
                    "Rows in each dataset after its last load.",
                    (Query("max by (dataset) (dataset_rows)", "{{dataset}}"),),
                ),
                Panel(
                    "Bytes per dataset",
                    "Bytes of each Parquet dataset's data files after its last load.",
                    (Query("max by (dataset) (dataset_bytes)", "{{dataset}}"),),
                    unit="bytes",
                ),
                Panel(
                    "Rows written",
                    "Rows loads wrote into each dataset, per second.",
                    (
                        Query(
                            "sum by (dataset) (rate(dataset_rows_written_total[" + RATE + "]))",
                            "{{dataset}}",
                        ),
                    ),
                    unit="rowsps",
                ),
                Panel(
                    "Rows written in the range",
                    "Rows written into each dataset in the dashboard's time range.",
                    (
                        Query(
                            "sum by (dataset) (increase(dataset_rows_written_total[$__range]))",
                            "{{dataset}}",
                        ),
                    ),
                    kind="stat",
                ),
            ),
        ),
        Row(
            "Loads",
            (
                Panel(
                    "Load duration",
                    "p50, p95 and p99 of the merge into each dataset.",
                    quantiles("dataset_load_duration_seconds", by="dataset"),
                    unit="s",
                ),
                Panel(
                    "Merge calls p95 (seen by the engine)",
                    "The engine's merge calls to the data merger, network included.",
                    (
                        Query(
                            "histogram_quantile(0.95, sum by (le) "
                            "(rate(agent_coordination_latency_seconds_bucket"
                            f'{{agent="data-merger", action="merge"}}[{RATE}])))',
                            "merge p95",
                        ),
                    ),
                    unit="s",
                ),
            ),
        ),
    ),
)
