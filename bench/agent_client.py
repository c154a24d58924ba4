"""The agent client's HTTP library, measured: httpx vs aiohttp against one real agent process.

    uv run python bench/agent_client.py --requests 5000 --concurrency 64

Starts the data-connector agent with uvicorn, calls its `noop` action (no ledger, no work) from
this process with each client in turn, and prints requests/s and latency percentiles. The
platform's `shared/agent_client.py` uses whichever wins here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launcher.processes import Service, free_port  # noqa: E402

TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "bench"}


async def drive(call: Callable[[], Awaitable[None]], total: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def with_httpx(url: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def call() -> None:
            r = await client.post(url, json={"x": 1}, headers=HEADERS)
            r.raise_for_status()
            r.json()

        await drive(call, 200, concurrency)  # warm the pool
        started = time.perf_counter()
        lat = await drive(call, total, concurrency)
        return time.perf_counter() - started, lat


async def with_aiohttp(url: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call() -> None:
            async with session.post(url, json={"x": 1}, headers=HEADERS) as r:
                r.raise_for_status()
                await r.json()

        await drive(call, 200, concurrency)
        started = time.perf_counter()
        lat = await drive(call, total, concurrency)
        return time.perf_counter() - started, lat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    port = free_port()
    env = {
        "SERVICE_TOKEN": TOKEN,
        "DATABASE_URL": os.environ.get(
            "DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
        "DATA_ROOT": tempfile.mkdtemp(),
    }
    agent = Service(
        "data-connector",
        "agents.data_connector.app",
        port,
        env,
        Path(tempfile.mkdtemp()) / "agent.log",
    )
    agent.start()
    try:
        agent.wait_healthy()
        url = f"{agent.url}/api/v1/noop"
        for name, runner in (("httpx", with_httpx), ("aiohttp", with_aiohttp)):
            elapsed, lat = asyncio.run(runner(url, args.requests, args.concurrency))
            lat.sort()
            print(
                f"{name:<8} {args.requests / elapsed:8.0f} req/s   "
                f"p50 {statistics.median(lat) * 1000:6.1f} ms   "
                f"p99 {lat[int(len(lat) * 0.99)] * 1000:6.1f} ms"
            )
    finally:
        agent.stop()


if __name__ == "__main__":
    main()
