"""`POST /coordinate` under a fixed arrival rate: an open-loop load generator that sends on
its schedule whether or not the server keeps up (a closed loop slows down with the server and
hides its queueing), at each rate for a fixed time.

    uv run python bench/coordinate_load.py [--rates 200,500,1000] [--seconds 60]
        [--freeze-engine]

Each request's latency counts from the moment the schedule meant to send it, so time spent
waiting behind a slow server is in the figure. Per rate it prints p50/p99/max latency,
errors, how late the generator itself was (its own limit on a shared machine), and how far
behind the engine fell: the most unfinished runs seen during the load, and how long the
backlog took to drain after it (`--drain-timeout`). With `--freeze-engine` the engine is
frozen during the load, so the figures are the controller's alone. Uses DATABASE_URL /
REDIS_URL when set, else embedded servers under var/bench.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throughput import DIAMOND, bench_env, connect, drop, pause, pct  # noqa: E402
from launcher.platform import RunningPlatform, running_platform  # noqa: E402
from launcher.processes import ROOT, Ports, Service  # noqa: E402


@dataclass
class Load:
    rate: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    send_lag_ms: list[float] = field(default_factory=list)
    max_unfinished: int = 0
    drain_s: float | None = None


async def offer(base: str, load: Load, seconds: float) -> None:
    """Send `rate` requests a second for `seconds`, each at its scheduled moment."""
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(
        base_url=base,
        connector=connector,
        headers={"Authorization": "Bearer dev-api-key"},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as api:

        async def one(scheduled: float) -> None:
            load.send_lag_ms.append((time.perf_counter() - scheduled) * 1000)
            try:
                async with api.post("/coordinate", json={"spec": DIAMOND, "inputs": {}}) as r:
                    await r.read()
                    if r.status >= 400:
                        key = f"HTTP {r.status}"
                        load.errors[key] = load.errors.get(key, 0) + 1
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                key = type(exc).__name__
                load.errors[key] = load.errors.get(key, 0) + 1
                return
            load.latencies_ms.append((time.perf_counter() - scheduled) * 1000)

        start = time.perf_counter()
        total = int(load.rate * seconds)
        pending = set()
        for i in range(total):
            scheduled = start + i / load.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


async def unfinished(env: dict[str, str]) -> int:
    conn = await connect(env)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM workflow_runs WHERE status IN ('PENDING', 'RUNNING')"
            )
        )
    finally:
        await conn.close()


async def watch_backlog(env: dict[str, str], load: Load, stop: asyncio.Event) -> None:
    while not stop.is_set():
        load.max_unfinished = max(load.max_unfinished, await unfinished(env))
        with contextlib.suppress(TimeoutError):  # a sample a second until the load ends
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def one_rate(platform: RunningPlatform, load: Load, seconds: float) -> None:
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_backlog(platform.env, load, stop))
    await offer(platform.controller_url, load, seconds)
    stop.set()
    await watcher


async def drain(env: dict[str, str], timeout_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await unfinished(env) == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    return None


def report(loads: list[Load], args: argparse.Namespace) -> None:
    mode = "engine frozen during the load" if args.freeze_engine else "engine running"
    print(f"POST /coordinate, open loop, {args.seconds:.0f} s per rate ({mode})")
    header = (
        f"{'rate/s':>7} {'sent':>7} {'ok':>7} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'lag p99':>8} {'max behind':>10} {'drain s':>8}"
    )
    print(header)
    for load in loads:
        ok = load.latencies_ms
        errors = sum(load.errors.values())
        drained = f"{load.drain_s:.1f}" if load.drain_s is not None else "timeout"
        print(
            f"{load.rate:>7.0f} {len(ok) + errors:>7} {len(ok):>7} {errors:>7} "
            f"{statistics.median(ok) if ok else float('nan'):>8.1f} {pct(ok, 99):>8.1f} "
            f"{max(ok, default=float('nan')):>8.1f} {pct(load.send_lag_ms, 99):>8.1f} "
            f"{load.max_unfinished:>10} {drained:>8}"
        )
        if load.errors:
            print(f"         errors: {load.errors}")
    print("latency counts from the scheduled send; lag = how late the generator sent")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="200,500,1000")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--freeze-engine", action="store_true")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    args = parser.parse_args()
    env = bench_env()
    loads = [Load(rate=float(r)) for r in args.rates.split(",")]
    with running_platform(
        ROOT / "var" / "bench", ports=Ports.random(), say=lambda *_: None, extra_env=env
    ) as platform:
        engine: Service = platform.services["workflow-engine"]
        try:
            for load in loads:
                if args.freeze_engine:
                    pause(engine, True)
                asyncio.run(one_rate(platform, load, args.seconds))
                if args.freeze_engine:
                    pause(engine, False)
                load.drain_s = asyncio.run(drain(platform.env, args.drain_timeout))
        finally:
            for service in platform.services.values():
                service.stop()
            asyncio.run(drop(platform.env, env["DB_SCHEMA"]))
    report(loads, args)


if __name__ == "__main__":
    main()
