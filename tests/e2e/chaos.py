"""The platform under fault: real processes on a schema, a Redis and a stream prefix of their
own, engines that can be killed and added, and a consumer group reading its event streams.
What the harness counts is in `tests/e2e/counts.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from launcher.processes import Ports, Service, free_port, platform_env, platform_services
from shared.db.session import asyncpg_dsn
from shared.state.machine import EVENT_TYPES, RUN_EVENT, TERMINAL_RUN
from tests.conftest import DATABASE_URL, SERVICE_TOKEN, fresh_schema, target_schema
from tests.e2e.faults import ExternalServer, RedisServer, TcpProxy

API_KEY = "chaos-api-key"
TERMINAL = frozenset(status.value for status in TERMINAL_RUN)
STREAMS = sorted(EVENT_TYPES)
GROUP = "harness"
FINAL_EVENTS = {RUN_EVENT[s] for s in TERMINAL_RUN}


@dataclass
class ChaosPlatform:
    """Six agents, a controller and one or more engines, plus the fault injectors around them."""

    schema: str
    stream_prefix: str
    env: dict[str, str]
    ports: Ports
    data_root: Path
    log_dir: Path
    services: dict[str, Service]
    engines: list[Service]
    redis: RedisServer
    external: ExternalServer
    fetch_proxy: TcpProxy
    schema_owner: Iterator[str] = field(repr=False)  # resuming it drops the schema
    events: EventLog = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventLog(self.redis.url, self.stream_prefix)

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.controller}"

    def add_engine(self) -> Service:
        """Start one more engine replica (it shares the work through PostgreSQL)."""
        index = len(self.engines) + 1
        replica = Service(
            f"workflow-engine-{index}",
            "services.workflow_engine.app",
            free_port(),
            self.env,
            self.log_dir / f"workflow-engine-{index}.log",
        )
        replica.start()
        replica.wait_healthy(timeout_s=120)
        self.engines.append(replica)
        return replica

    async def connect(self) -> asyncpg.Connection:
        """A connection to the platform's schema (reconnecting through a database restart)."""
        deadline = time.monotonic() + 120
        while True:
            try:
                return await asyncpg.connect(
                    asyncpg_dsn(DATABASE_URL), server_settings={"search_path": self.schema}
                )
            except (OSError, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one query on a fresh connection, retrying while the database is away."""
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = await self.connect()
                try:
                    return list(await conn.fetch(sql, *args))
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    def api(self) -> httpx.AsyncClient:
        """A client of the controller's public API."""
        return httpx.AsyncClient(
            base_url=self.controller_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )

    async def submit(
        self, spec: dict[str, Any], inputs: list[dict[str, Any]], *, concurrency: int = 8
    ) -> list[str]:
        """POST /coordinate once per inputs; return the ids of the runs accepted (202)."""
        gate = asyncio.Semaphore(concurrency)
        async with self.api() as api:

            async def one(values: dict[str, Any]) -> str:
                async with gate:
                    for _ in range(60):  # the controller may be briefly away (database restart)
                        with contextlib.suppress(httpx.TransportError):
                            response = await api.post(
                                "/coordinate", json={"spec": spec, "inputs": values}
                            )
                            if response.status_code == 202:
                                return str(response.json()["run_id"])
                            if response.status_code < 500:
                                raise AssertionError(response.text)
                        await asyncio.sleep(0.5)
                    raise AssertionError("the controller did not accept the run")

            return list(await asyncio.gather(*(one(v) for v in inputs)))

    async def statuses(self, run_ids: list[str]) -> dict[str, str]:
        """Each run's status as stored."""
        rows = await self.query(
            "SELECT id::text AS id, status FROM workflow_runs WHERE id = ANY($1::uuid[])", run_ids
        )
        return {row["id"]: row["status"] for row in rows}

    async def wait_terminal(self, run_ids: list[str], timeout_s: float) -> dict[str, str]:
        """Wait until every run is terminal (or the time is up); return the statuses."""
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = await self.statuses(run_ids)
            done = sum(1 for s in statuses.values() if s in TERMINAL)
            if done == len(run_ids) or time.monotonic() > deadline:
                return statuses
            await asyncio.sleep(0.5)

    async def run_detail(self, run_id: str) -> dict[str, Any]:
        """GET /workflows/{id}: the run with every step and its attempts."""
        async with self.api() as api:
            response = await api.get(f"/workflows/{run_id}")
            response.raise_for_status()
            detail: dict[str, Any] = response.json()
            return detail


def start_platform(base: Path, *, extra_env: dict[str, str] | None = None) -> ChaosPlatform:
    """Start the injectors and the eight services on a fresh schema; `stop_platform` undoes it."""
    schemas = fresh_schema()
    schema = next(schemas)
    ports = Ports.random()
    data_root, log_dir = base / "data", base / "logs"
    data_root.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(base / "redis")
    redis.start()
    external = ExternalServer().start()
    fetch_proxy = TcpProxy(ports.agents["data-fetch-retry"]).start()
    env = platform_env(
        database_url=DATABASE_URL,
        redis_url=redis.url,
        ports=ports,
        data_root=data_root,
        service_token=SERVICE_TOKEN,
        extra={
            "DB_SCHEMA": schema,
            "AGENT_TARGET_SCHEMAS": json.dumps([target_schema(schema)]),
            "STREAM_PREFIX": f"chaos-{uuid.uuid4().hex[:8]}:",
            "CONTROLLER_API_KEYS": json.dumps([API_KEY]),
            "CONTROLLER_HEALTH_INTERVAL_S": "2",
            "CONTROLLER_HANDOFF_INTERVAL_S": "1",
            "CONTROLLER_SEED_SCHEDULES": "false",
            # The harness submits hundreds of runs at once: admit them all.
            "CONTROLLER_ORCHESTRATORS": json.dumps(
                {
                    "batch_manager": {
                        "max_concurrent_runs": 100000,
                        "max_concurrent_per_workflow": 100000,
                    },
                    "ingestion_manager": {"max_concurrent_runs": 100000},
                }
            ),
            # A killed agent's in-progress claims are taken over within seconds.
            "AGENT_HEARTBEAT_S": "0.5",
            "AGENT_DEAD_AFTER_S": "3",
            # Short leases: a killed engine's steps are taken over within seconds.
            "ENGINE_LEASE_SECONDS": "2",
            "ENGINE_POLL_INTERVAL_S": "0.5",
            "ENGINE_SHUTDOWN_GRACE_S": "8",
            # Fewer calls at once keep the agents' connection pools (and so the PostgreSQL
            # connections of the whole platform) under a shared server's max_connections.
            "ENGINE_CONCURRENCY": "32",
            **(extra_env or {}),
        },
    )
    # The engine reaches data-fetch-retry through the proxy, so replies can be lost on cue.
    urls = ports.agent_urls()
    urls["data-fetch-retry"] = f"http://127.0.0.1:{fetch_proxy.port}"
    env["AGENT_URLS"] = json.dumps(urls)
    services = platform_services(env, ports, log_dir)
    try:
        for service in services:
            service.start()
        for service in services:
            service.wait_healthy(timeout_s=180)
    except BaseException:  # leave nothing running behind a failed start
        for service in services:
            service.kill()
        fetch_proxy.stop()
        external.stop()
        redis.kill()
        next(schemas, None)
        raise
    by_name = {s.name: s for s in services}
    platform = ChaosPlatform(
        schema=schema,
        stream_prefix=env["STREAM_PREFIX"],
        env=env,
        ports=ports,
        data_root=data_root,
        log_dir=log_dir,
        services=by_name,
        engines=[by_name["workflow-engine"]],
        redis=redis,
        external=external,
        fetch_proxy=fetch_proxy,
        schema_owner=schemas,
    )
    return platform


def stop_platform(platform: ChaosPlatform) -> None:
    """Stop every process and injector, then drop the schema."""
    for engine in platform.engines[1:]:
        engine.stop()
    for service in reversed(list(platform.services.values())):
        service.stop()
    platform.fetch_proxy.stop()
    platform.external.stop()
    platform.redis.kill()
    next(platform.schema_owner, None)


@contextlib.contextmanager
def running(base: Path, **kwargs: Any) -> Iterator[ChaosPlatform]:
    """`start_platform` ... `stop_platform` as a context manager."""
    platform = start_platform(base, **kwargs)
    try:
        yield platform
    finally:
        stop_platform(platform)


# ---- events: what a consumer group reads ------------------------------------------------------


class EventLog:
    """A consumer group over every stream of the platform's prefix, read on demand."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.deliveries: dict[str, list[dict[str, Any]]] = {}  # event id -> each delivery
        self.arrivals: list[tuple[str, dict[str, Any]]] = []  # (stream, event) as read
        self._created = False

    async def read(self) -> None:
        """Read (and acknowledge) everything new for the harness's group."""
        client = aioredis.from_url(self.redis_url)
        try:
            if not self._created:
                for stream in STREAMS:
                    with contextlib.suppress(aioredis.ResponseError):  # exists already
                        await client.xgroup_create(
                            self.prefix + stream, GROUP, id="0", mkstream=True
                        )
                self._created = True
            names: dict[Any, Any] = {self.prefix + s: ">" for s in STREAMS}
            while True:
                replies: Any = await client.xreadgroup(GROUP, "harness", names, count=5000)
                if not replies:
                    return
                for stream, messages in replies:
                    for _message_id, fields in messages:
                        event = json.loads(fields[b"event"])
                        self.deliveries.setdefault(event["id"], []).append(event)
                        self.arrivals.append((stream.decode(), event))
                    await client.xack(stream, GROUP, *[m[0] for m in messages])
        finally:
            await client.aclose()
