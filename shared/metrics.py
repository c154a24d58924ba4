"""Prometheus metric definitions, declared once for every service.

Each service builds its own `CollectorRegistry` so several apps can live in one test
process without clashing.
"""

from __future__ import annotations

from dataclasses import dataclass

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
            "Steps ready to run but not yet claimed, plus admitted runs not yet started",
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
    )


def mount_metrics(app: FastAPI, registry: CollectorRegistry) -> None:
    """Serve the registry at GET /metrics."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(_generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
