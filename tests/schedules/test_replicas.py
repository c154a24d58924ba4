"""Two real controller processes (uvicorn) on one database tick the same schedule for a few
seconds of real time: every tick of the schedule produces exactly one run."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from launcher.processes import Service, free_port
from shared.db.session import asyncpg_dsn, create_engine, create_sessionmaker
from shared.settings import CommonSettings
from tests.conftest import DATABASE_URL, REDIS_URL, SERVICE_TOKEN
from tests.polling import eventually
from tests.schedules.helpers import API_KEY, AUTH, one_step_spec


def controller_process(env: dict, log_dir: Path, name: str) -> Service:
    port = free_port()
    return Service(
        name,
        "services.orchestrator_controller.app",
        port,
        {
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "DB_SCHEMA": env["db_schema"],
            "STREAM_PREFIX": env["stream_prefix"],
            "SERVICE_TOKEN": SERVICE_TOKEN,
            "CONTROLLER_API_KEYS": json.dumps([API_KEY]),
            "CONTROLLER_ENGINE_URL": "http://127.0.0.1:9",  # no engine: runs stay PENDING
            "CONTROLLER_SCHEDULE_TICK_S": "0.1",
            "CONTROLLER_SEED_SCHEDULES": "false",
            "CONTROLLER_REGISTER_BUILTIN_WORKFLOWS": "false",
            "CONTROLLER_HEALTH_INTERVAL_S": "60",
            "PYTHONUNBUFFERED": "1",
        },
        log_dir / f"{name}.log",
    )


@pytest.mark.timeout(90)
def _fired(env: dict, count: int) -> Callable[[], Awaitable[bool]]:
    """Whether the schedule has fired `count` times (read with a connection of its own)."""

    async def fired() -> bool:
        conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
        try:
            query = f'SELECT count(*) FROM "{env["db_schema"]}".schedule_fires'
            return bool(await conn.fetchval(query) >= count)
        finally:
            await conn.close()

    return fired


async def test_two_controller_processes_start_one_run_per_tick(env: dict, tmp_path: Path) -> None:
    replicas = [controller_process(env, tmp_path, f"controller-{i}") for i in (1, 2)]
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_healthy(timeout_s=60)
        first, second = (f"http://127.0.0.1:{r.port}" for r in replicas)
        async with httpx.AsyncClient(headers=AUTH, timeout=10) as http:
            spec = one_step_spec("ticked")
            assert (await http.post(f"{first}/workflows/definitions", json=spec)).status_code == 201
            start_at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
            created = await http.post(
                f"{second}/schedules",
                json={
                    "name": "every-second",
                    "workflow": "ticked",
                    "interval_s": 1,
                    "start_at": start_at.isoformat(),
                    "overlap": "allow",
                    "catchup": "all",
                },
            )
            assert created.status_code == 201, created.text
            await eventually(_fired(env, 5), within_s=30)  # both processes tick meanwhile
            off = await http.patch(f"{first}/schedules/every-second", json={"enabled": False})
            assert off.status_code == 200
        for replica in replicas:
            assert replica.process is not None and replica.process.poll() is None
    finally:
        for replica in replicas:
            replica.stop()

    engine = create_engine(CommonSettings(database_url=DATABASE_URL, db_schema=env["db_schema"]))
    try:
        async with create_sessionmaker(engine)() as session:
            fires = (
                await session.execute(
                    text("SELECT fire_at, run_id, outcome FROM schedule_fires ORDER BY fire_at")
                )
            ).all()
            runs = (
                await session.execute(
                    text("SELECT id FROM workflow_runs WHERE workflow_name = 'ticked'")
                )
            ).all()
    finally:
        await engine.dispose()
    assert len(fires) >= 5, fires
    # every tick of the one-second grid fired, none twice, and each made exactly one run
    grid = [start_at + timedelta(seconds=i) for i in range(len(fires))]
    assert [f.fire_at for f in fires] == grid
    assert all(f.outcome == "started" and f.run_id is not None for f in fires)
    assert sorted(str(r.id) for r in runs) == sorted(str(f.run_id) for f in fires)
