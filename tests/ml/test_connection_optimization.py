"""Connection optimization for real: the capacity simulator, the limiter, quick training into a
SQLite MLflow store, and the collector pacing a live rate-limited API with the champion."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agents.base.settings import AgentSettings
from agents.data_collector.app import create_app
from ml import registry
from ml.connection_optimization.limiter import Pacer
from ml.connection_optimization.model import FixedPlanner, KnnPlanner, LimiterOnlyPlanner
from ml.connection_optimization.plan import ConnectionPlan
from ml.connection_optimization.simulate import SIM_BOUNDS, PlannedClient
from ml.connection_optimization.train import NAME, train
from ml.sim.capacity import make_source, run_episode
from ml.train import TrainingContext
from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL, asgi_client, service_auth
from tests.serving import serve

# ----------------------------------------------------------------------------- simulator


def _episode(family: str, source_seed: int, seed: int, planner: Any) -> tuple[Any, ...]:
    source = make_source(family, source_seed, records=5_000)
    out = run_episode(source, PlannedClient(planner, SIM_BOUNDS), seed=seed)
    return out.records, out.requests, out.rejected, out.errors, round(out.elapsed_s, 9)


def test_the_simulator_is_reproducible_and_pushback_grows_with_load() -> None:
    first = _episode("noisy", 3, 11, LimiterOnlyPlanner())
    assert first == _episode("noisy", 3, 11, LimiterOnlyPlanner())
    assert first != _episode("noisy", 3, 12, LimiterOnlyPlanner())
    assert make_source("strict_rate", 5) == make_source("strict_rate", 5)
    assert first[0] == 5_000  # every record fetched

    class Hold:
        probe_requests = 0

        def __init__(self, concurrency: int) -> None:
            self.concurrency = concurrency

        def plan(self, observations: Any, bounds: Any) -> ConnectionPlan:
            c = self.concurrency
            return ConnectionPlan(
                c, 100, None, adaptive=False, min_concurrency=c, max_concurrency=c
            )

    source = make_source("small_capacity", 1, records=5_000)
    gentle = run_episode(source, PlannedClient(Hold(1), SIM_BOUNDS), seed=1)
    pushed = run_episode(source, PlannedClient(Hold(32), SIM_BOUNDS), seed=1)
    assert gentle.rejected == 0 and pushed.rejected > 50
    assert pushed.p99_s > gentle.p99_s or pushed.rejected > pushed.requests / 2


# ----------------------------------------------------------------------------- limiter


def test_the_limiter_backs_off_on_429s_and_grows_when_healthy() -> None:
    pacer = Pacer(ConnectionPlan(8, 100, None, min_concurrency=2, max_concurrency=12))
    assert pacer.delay(0.0, in_flight=7) == 0.0 and pacer.delay(0.0, in_flight=8) is None
    for _ in range(10):  # healthy and busy: one more per answer, up to the plan's ceiling
        pacer.answered(1.0, status=200, latency_s=0.1, retry_after_s=None, in_flight=8)
    assert pacer.limit.allowed == 12
    for i in range(16):  # answers at 10/s
        pacer.answered(2.0 + i * 0.1, status=200, latency_s=0.1, retry_after_s=None, in_flight=0)
    for i in range(20):  # pushed back: multiplicative decrease, never under the floor
        pacer.answered(4.0 + i * 0.01, status=429, latency_s=0.5, retry_after_s=None, in_flight=4)
    assert pacer.limit.allowed == 2
    # The rate now paces the sends: cut once below the 10/s admitted, not once per refusal.
    assert pacer.rate == pytest.approx(7.0)
    pacer.sent(4.5)
    assert pacer.delay(4.5, in_flight=0) == pytest.approx(1 / 7.0)  # one interval at 7/s
    pacer.answered(5.0, status=429, latency_s=0.05, retry_after_s=None, in_flight=0)
    assert pacer.rate == pytest.approx(4.9)  # a request sent after the cut: cut again
    pacer.answered(5.5, status=200, latency_s=0.1, retry_after_s=None, in_flight=1)
    assert pacer.rate is not None and pacer.rate > 4.9
    pacer.answered(6.0, status=429, latency_s=0.01, retry_after_s=3.0, in_flight=0)
    assert pacer.delay(6.5, in_flight=0) == pytest.approx(2.5)  # Retry-After pauses all sends
    held = Pacer(FixedPlanner().plan(None, SIM_BOUNDS))  # type: ignore[arg-type]
    held.answered(1.0, status=429, latency_s=0.01, retry_after_s=None, in_flight=4)
    assert held.limit.allowed == 4 and held.rate is None  # the fixed baseline never adapts


# ----------------------------------------------------------------------------- training


@dataclass
class Trained:
    uri: str
    version: str
    model: KnnPlanner
    scores: dict[str, float]


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    trained = train(TrainingContext(quick=True))  # its time is bench/models.py's to print
    uri = registry.local_tracking_uri(tmp_path_factory.mktemp("mlflow"))
    registered = registry.register(trained, uri=uri)
    assert registered.promoted, registered.reason
    scores = {"model": trained.model_score, **trained.references}
    assert trained.params["training_data"].startswith("simulator only")
    return Trained(uri, registered.version, trained.predictor, scores)


def test_quick_training_beats_both_baselines_on_held_out_families(champion: Trained) -> None:
    assert champion.scores["model"] > champion.scores["fixed_spec_settings"]
    assert champion.scores["model"] > champion.scores["adaptive_limiter_alone"]
    loaded = registry.load(NAME, uri=champion.uri)
    assert loaded.version == champion.version and isinstance(loaded.predictor, KnnPlanner)


# ----------------------------------------------------------------------------- collector


@dataclass
class LimitedApi:
    """A paginated API with a hidden per-second rate limit (token bucket, no Retry-After)."""

    rate_per_s: float = 5.0
    burst: float = 2.0
    records: int = 80
    page_size: int = 5
    tokens: float = 2.0
    last: float = field(default_factory=time.monotonic)
    refused: int = 0
    served: int = 0
    sizes: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.tokens, self.last, self.refused, self.served = self.burst, time.monotonic(), 0, 0
            self.sizes.clear()

    def admit(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate_per_s)
            self.last = now
            if self.tokens < 1.0:
                self.refused += 1
                return False
            self.tokens -= 1.0
            self.served += 1
            return True


def limited_app(api: LimitedApi) -> FastAPI:
    app = FastAPI()

    @app.get("/items")
    async def items(request: Request) -> JSONResponse:
        if not api.admit():
            return JSONResponse({"error": "slow down"}, status_code=429)
        start = int(request.query_params.get("cursor", 0))
        asked = int(request.query_params.get("limit", api.page_size))
        api.sizes.append(asked)
        size = min(asked, api.page_size)  # a larger page is clamped, as real APIs do
        rows = [{"id": i} for i in range(start, min(start + size, api.records))]
        nxt = start + size if start + size < api.records else None
        return JSONResponse({"data": rows, "next_cursor": nxt})

    return app


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[LimitedApi, str]]:
    state = LimitedApi()
    with serve(limited_app(state)) as url:
        yield state, url


async def _client(settings: AgentSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(settings)) as c:
        yield c


@pytest.fixture
async def baseline_client(common_env: dict) -> AsyncIterator[httpx.AsyncClient]:
    settings = AgentSettings(**common_env, allow_private_hosts=["127.0.0.1"])
    async for c in _client(settings):
        yield c


@pytest.fixture
async def model_client(common_env: dict, champion: Trained) -> AsyncIterator[httpx.AsyncClient]:
    settings = AgentSettings(
        **common_env,
        allow_private_hosts=["127.0.0.1"],
        mlflow_tracking_uri=champion.uri,
        model_refresh_s=3600,
    )
    async for c in _client(settings):
        yield c


async def _collect(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    body = {
        "source": {"kind": "http", "url": f"{url}/items"},
        "pagination": {"type": "cursor", "cursor_path": "next_cursor", "size_param": "limit"},
        "records_path": "data",
        "max_attempts": 8,
    }
    headers = {**service_auth(), "X-Run-Id": "pacing-tests", "X-Step-Id": uuid.uuid4().hex}
    resp = await client.post("/api/v1/collect", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def _ids(out: dict[str, Any]) -> list[int]:
    rows = []
    for manifest in out["files"]:
        rows += [json.loads(line)["id"] for line in Path(manifest["uri"]).read_text().splitlines()]
    return rows


async def test_the_baseline_serves_without_a_registry_and_health_says_so(
    baseline_client: httpx.AsyncClient, api: tuple[LimitedApi, str]
) -> None:
    state, url = api
    health = (await baseline_client.get("/health")).json()
    slot = health["checks"][f"model:{NAME}"]
    assert slot["source"] == "baseline" and slot["version"] is None
    assert slot["problem"] == "no registry configured"
    state.reset()
    out = await _collect(baseline_client, url)
    assert _ids(out) == list(range(80))
    assert out["pacing"]["decider"] == {"model": NAME, "version": None, "source": "baseline"}
    assert out["pacing"]["plan"]["adaptive"] is False
    assert state.refused > 0  # unpaced, the walk runs into the hidden limit


async def test_the_champion_paces_a_rate_limited_api_with_fewer_429s(
    baseline_client: httpx.AsyncClient,
    model_client: httpx.AsyncClient,
    api: tuple[LimitedApi, str],
    champion: Trained,
) -> None:
    state, url = api
    state.reset()
    fixed = await _collect(baseline_client, url)
    fixed_refused = state.refused
    state.reset()
    paced = await _collect(model_client, url)
    paced_refused = state.refused
    assert _ids(fixed) == _ids(paced) == list(range(80))
    assert paced_refused < fixed_refused, (paced_refused, fixed_refused)
    pacing = paced["pacing"]
    assert pacing["decider"] == {"model": NAME, "version": champion.version, "source": "registry"}
    plan = pacing["plan"]
    assert plan["adaptive"] is True and plan["max_concurrency"] == 1
    assert pacing["probe"]["requests"] == KnnPlanner.probe_requests
    assert pacing["limiter"]["rejected"] + pacing["probe"]["rejected"] == paced_refused
    # Cursor pagination lets the plan's page size go out once the probe is over.
    assert state.sizes[0] == 5 and state.sizes[-1] == plan["page_size"]


async def test_training_learns_from_recorded_collects(
    model_client: httpx.AsyncClient, api: tuple[LimitedApi, str], db_schema: str
) -> None:
    state, url = api
    state.reset()
    out = await _collect(model_client, url)
    # The row the engine writes when a collect step succeeds, with that collect's real output.
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        run_id = uuid.uuid4()
        await conn.execute(
            f'INSERT INTO "{db_schema}".workflow_runs (id, workflow_name, workflow_version, kind, '
            "spec, inputs, status, trace_id) VALUES ($1, 'standard', 1, 'standard', '{}', '{}', "
            "'SUCCEEDED', 'pacing')",
            run_id,
        )
        log = [{"attempt": 1, "outcome": "succeeded", "duration_ms": 250.0}]
        await conn.execute(
            f'INSERT INTO "{db_schema}".step_runs (run_id, step_id, agent, action, status, '
            "output, attempt_log, finished_at) VALUES ($1, 'collect', 'data-collector', 'collect', "
            "'SUCCEEDED', $2::jsonb, $3::jsonb, now())",
            run_id,
            json.dumps(out),
            json.dumps(log),
        )
    finally:
        await conn.close()
    ctx = TrainingContext(quick=True, database_url=DATABASE_URL, db_schema=db_schema)
    trained = await asyncio.to_thread(train, ctx)
    assert trained.params["history_twins"] >= 1
    assert "history twins" in trained.params["training_data"]
    assert trained.params["history_call_ms_p50"] is not None
    assert any(k.startswith("model_history_") for k in trained.details)  # evaluated on it
