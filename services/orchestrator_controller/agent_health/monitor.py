"""Polls each agent's /health (the built-in ones and the registered ones), stores status and
latency, publishes changes as events."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.settings import ControllerSettings
from shared.agent_registry import registered_agents
from shared.events.outbox import Event, emit
from shared.metrics import PlatformMetrics

log = logging.getLogger(__name__)
GAUGE = {"healthy": 1.0, "degraded": 0.5}

_UPSERT = text(
    """
INSERT INTO agent_health AS h (agent, url, status, latency_ms, detail, checked_at, changed_at)
VALUES (:agent, :url, :status, :latency_ms, CAST(:detail AS jsonb), now(), now())
ON CONFLICT (agent) DO UPDATE SET
    url = excluded.url, latency_ms = excluded.latency_ms, detail = excluded.detail,
    checked_at = now(),
    changed_at = CASE WHEN h.status <> excluded.status THEN now() ELSE h.changed_at END,
    status = excluded.status
"""
)


class HealthMonitor:
    def __init__(
        self,
        settings: ControllerSettings,
        sessionmaker: async_sessionmaker,
        http: httpx.AsyncClient,
        metrics: PlatformMetrics,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.http = http
        self.metrics = metrics

    async def probe(self, agent: str, url: str) -> tuple[str, float | None, dict[str, Any]]:
        """One health check: (status, latency in ms, detail)."""
        started = time.perf_counter()
        try:
            response = await self.http.get(
                f"{url}/health", timeout=self.settings.live.current.health_timeout_s
            )
        except httpx.HTTPError as exc:
            return "unreachable", None, {"error": f"{type(exc).__name__}: {exc}"}
        latency = (time.perf_counter() - started) * 1000
        try:
            body = response.json()
        except ValueError:
            body = {}
        status = body.get("status") if isinstance(body, dict) else None
        if status not in ("healthy", "degraded", "unhealthy"):
            status = "healthy" if response.status_code == 200 else "unhealthy"
        return status, round(latency, 2), body if isinstance(body, dict) else {}

    async def agents(self) -> dict[str, str]:
        """Every agent to poll and its base URL: the built-ins, then the registered ones."""
        async with self.sessionmaker() as session:
            registered = await registered_agents(session)
        return {
            **{name: agent.base_url for name, agent in registered.items()},
            **self.settings.agent_urls,
        }

    async def check_all(self) -> None:
        """Probe every agent at once and store the results."""
        agents = await self.agents()
        results = await asyncio.gather(*(self.probe(a, u) for a, u in agents.items()))
        async with self.sessionmaker() as session, session.begin():
            events = []
            for (agent, url), (status, latency, detail) in zip(
                agents.items(), results, strict=True
            ):
                previous = (
                    await session.execute(
                        text("SELECT status FROM agent_health WHERE agent = :a FOR UPDATE"),
                        {"a": agent},
                    )
                ).scalar_one_or_none()
                await session.execute(
                    _UPSERT,
                    {
                        "agent": agent,
                        "url": url,
                        "status": status,
                        "latency_ms": latency,
                        "detail": json.dumps(detail, default=str),
                    },
                )
                self.metrics.agent_health_status.labels(agent).set(GAUGE.get(status, 0.0))
                if previous != status:
                    events.append(
                        Event(
                            "ingestion.agent.health",
                            None,
                            {
                                "agent": agent,
                                "status": status,
                                "previous": previous,
                                "latency_ms": latency,
                            },
                        )
                    )
            await emit(session, events, schema=self.settings.db_schema)

    async def run(self) -> None:
        """Check forever, every health_interval_s."""
        while True:
            try:
                await self.check_all()
            except Exception as exc:  # database away: try again next round
                log.warning("agent health round failed: %s", exc)
            await self.settings.live.sleep("health_interval_s")
