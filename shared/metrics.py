"""Prometheus metric definitions, declared once for every service.

Each service builds its own `CollectorRegistry` so several apps can live in one test
process without clashing. The dashboards (deploy/grafana/) and alerts (deploy/prometheus/)
use these names only; tests/e2e/test_observability.py evaluates every query against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class PlatformMetrics:
    registry: CollectorRegistry
    workflows_executed: Counter
    workflow_duration: Histogram
    active_workflows: Gauge
    agent_health_status: Gauge
    workflow_queue_size: Gauge
    agent_coordination_latency: Histogram
    steps_executed: Counter
    admission_batch_size: Histogram
    # engine
    runs_started: Counter
    steps_claimed: Counter
    # controller, refreshed by the admission loop (services/orchestrator_controller/gauges.py)
    engine_backlog: Gauge
    admission_waiting: Gauge
    relay_active: Gauge
    relay_lag: Gauge
    schedule_fire_lag: Gauge
    api_host_paused: Gauge
    api_host_admissions: Gauge
    api_host_rate_limit: Gauge
    # controller, set by its leader election (services/orchestrator_controller/kubernetes/leader.py)
    controller_leader: Gauge


def create_metrics() -> PlatformMetrics:
    """A fresh registry holding the platform's metrics."""
    registry = CollectorRegistry()
    return PlatformMetrics(
        registry=registry,
        workflows_executed=Counter(
            "workflows_executed_total",
            "Workflow runs that reached a terminal state",
            ["type", "status"],
            registry=registry,
        ),
        workflow_duration=Histogram(
            "workflow_execution_duration_seconds",
            "Wall time from run start to its terminal state",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        active_workflows=Gauge(
            "active_workflows", "Runs currently PENDING or RUNNING", registry=registry
        ),
        agent_health_status=Gauge(
            "agent_health_status",
            "1 when the agent's last health check passed, 0.5 degraded, 0 otherwise",
            ["agent"],
            registry=registry,
        ),
        workflow_queue_size=Gauge(
            "workflow_queue_size",
            "Work waiting to run: ready steps, due retries, admitted runs not started and runs "
            "waiting for admission (counted by shared/db/queue.py)",
            registry=registry,
        ),
        agent_coordination_latency=Histogram(
            "agent_coordination_latency_seconds",
            "Latency of calls from the platform to agents",
            ["agent", "action"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        steps_executed=Counter(
            "workflow_steps_executed_total",
            "Step attempts finished, by outcome",
            ["agent", "outcome"],
            registry=registry,
        ),
        admission_batch_size=Histogram(
            "admission_batch_size",
            "Runs accepted by /coordinate in one admission transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        ),
        runs_started=Counter(
            "workflow_runs_started_total",
            "Runs an engine started (admitted PENDING to RUNNING)",
            ["type"],
            registry=registry,
        ),
        steps_claimed=Counter(
            "workflow_steps_claimed_total",
            "Step attempts an engine claimed",
            ["agent"],
            registry=registry,
        ),
        engine_backlog=Gauge(
            "workflow_engine_backlog",
            "Work handed to the engines and not begun: ready steps and admitted runs not "
            "started (workflow_queue_size less the runs still waiting for admission)",
            registry=registry,
        ),
        admission_waiting=Gauge(
            "admission_waiting_runs",
            "Runs waiting for admission, by workflow type and the policy holding them",
            ["type", "reason"],
            registry=registry,
        ),
        relay_active=Gauge(
            "events_relay_active",
            "1 while some process holds the outbox relay lock, else 0",
            registry=registry,
        ),
        relay_lag=Gauge(
            "events_relay_lag_seconds",
            "Age of the oldest event not yet published to Redis Streams (0 when none waits)",
            registry=registry,
        ),
        schedule_fire_lag=Gauge(
            "schedule_fire_lag_seconds",
            "How far past its due time an enabled schedule's next fire is (0 until it is due)",
            ["schedule"],
            registry=registry,
        ),
        api_host_paused=Gauge(
            "api_host_paused",
            "1 while the API manager holds a host's runs back after it throttled (its circuit "
            "is open), else 0",
            ["host"],
            registry=registry,
        ),
        api_host_admissions=Gauge(
            "api_host_admissions_in_window",
            "Runs admitted per source host within the API manager's rate window",
            ["host"],
            registry=registry,
        ),
        api_host_rate_limit=Gauge(
            "api_host_rate_limit",
            "The API manager's limit of runs per host within its rate window",
            registry=registry,
        ),
        controller_leader=Gauge(
            "controller_leader",
            "1 while this controller replica holds the leader Lease and runs the leader-only "
            "Kubernetes loops, else 0 (one replica of all should say 1; 1 as well without "
            "leader election)",
            ["identity"],
            registry=registry,
        ),
    )


@dataclass
class AgentMetrics:
    """What every agent exports; `agent` is a label so one query can compare agents."""

    agent: str
    registry: CollectorRegistry
    calls: Counter
    duration: Histogram
    errors: Counter
    dataset_rows: Gauge
    dataset_bytes: Gauge
    dataset_rows_written: Counter
    dataset_load_duration: Histogram

    def call(self, action: str, outcome: str) -> None:
        """Count one request: ok, error, crash or replayed."""
        self.calls.labels(self.agent, action, outcome).inc()

    def failed(self, action: str, code: str) -> None:
        """Count an action's error by its code."""
        self.errors.labels(self.agent, action, code).inc()

    def finished(self, action: str, seconds: float) -> None:
        """Time an action, whatever its outcome."""
        self.duration.labels(self.agent, action).observe(seconds)

    def loaded(self, seconds: float, result: Any) -> None:
        """A successful result naming a `dataset` and its `written` rows is a load.

        That is the data merger's result (agents/data_merger/actions.py): `rows` is the
        dataset's size after the load, `size_bytes` (Delta) or `files[].bytes` (the earlier Parquet
        format) its data files,
        and `replayed: true` a batch merged before, so nothing is counted twice.
        """
        if not isinstance(result, Mapping):
            return
        dataset, written = result.get("dataset"), _count(result.get("written"))
        if not isinstance(dataset, str) or written is None:
            return
        if not result.get("replayed"):
            self.dataset_rows_written.labels(dataset).inc(written)
            self.dataset_load_duration.labels(dataset).observe(seconds)
        if (rows := _count(result.get("rows"))) is not None:
            self.dataset_rows.labels(dataset).set(rows)
        files = result.get("files")
        if (size := _count(result.get("size_bytes"))) is not None:
            self.dataset_bytes.labels(dataset).set(size)  # a Delta table's current files
        elif isinstance(files, list) and files:
            sizes = [_count(f.get("bytes")) if isinstance(f, Mapping) else None for f in files]
            if None not in sizes:
                self.dataset_bytes.labels(dataset).set(sum(s or 0 for s in sizes))


def _count(value: Any) -> int | None:
    """`value` when it is a count (an int, not a bool, >= 0), else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def create_agent_metrics(agent: str) -> AgentMetrics:
    """A fresh registry holding one agent's metrics."""
    registry = CollectorRegistry()
    return AgentMetrics(
        agent=agent,
        registry=registry,
        calls=Counter(
            "agent_actions_total",
            "Action requests",
            ["agent", "action", "outcome"],
            registry=registry,
        ),
        duration=Histogram(
            "agent_action_duration_seconds",
            "Time spent in action handlers",
            ["agent", "action"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        errors=Counter(
            "agent_action_errors_total",
            "Actions that answered an error, by its code",
            ["agent", "action", "code"],
            registry=registry,
        ),
        dataset_rows=Gauge(
            "dataset_rows",
            "Rows in the dataset after its last load by this agent",
            ["dataset"],
            registry=registry,
        ),
        dataset_bytes=Gauge(
            "dataset_bytes",
            "Bytes of the dataset's data files after its last load (Delta and Parquet targets)",
            ["dataset"],
            registry=registry,
        ),
        dataset_rows_written=Counter(
            "dataset_rows_written_total",
            "Rows written into the dataset by loads",
            ["dataset"],
            registry=registry,
        ),
        dataset_load_duration=Histogram(
            "dataset_load_duration_seconds",
            "Time a load into the dataset took (the merge action)",
            ["dataset"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
    )


def mount_metrics(app: FastAPI, registry: CollectorRegistry) -> None:
    """Serve the registry at GET /metrics."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(_generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
