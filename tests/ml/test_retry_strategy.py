"""The retry strategy for real: a reproducible simulator, quick training registered in a SQLite
MLflow store and beating both baselines on held-out families, fetch-retry deciding with the
champion (provenance in its output, the spec's limits holding) and falling back to the
baseline when the registry is away; the engine's advisor loading the same champion.

Simulated time only: no test sleeps more than a fraction of a second."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.base.settings import AgentSettings
from agents.data_fetch_retry.app import create_app
from ml import registry
from ml.evaluate import TrainedModel
from ml.retry_strategy.history import samples_from_logs
from ml.retry_strategy.policy import GRID, FailureContext, StaticExponential, clamp, keys
from ml.retry_strategy.simulate import Accumulator, decide_fn, run, simulator_samples
from ml.retry_strategy.train import add_history, history_brier, train
from ml.sim.flaky import (
    HELD_OUT_FAMILIES,
    HELD_OUT_SEED,
    TRAIN_FAMILIES,
    episode,
    episodes,
    run_episode,
)
from ml.train import TrainingContext
from services.workflow_engine.retry_model import RetryAdvisor
from services.workflow_engine.step_call import RunContext, run_step
from shared.agent_client import AgentClient
from shared.spec.models import WorkflowSpec
from shared.state.steps import ClaimedStep
from tests.agents.source_api import SourceServer, serve_source
from tests.conftest import SERVICE_TOKEN, asgi_client, service_auth
from tests.serving import serve


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return train(TrainingContext(quick=True))


@pytest.fixture(scope="module")
def uri(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> str:
    store = registry.local_tracking_uri(tmp_path_factory.mktemp("mlflow"))
    assert registry.register(trained, uri=store).promoted
    return store


@pytest.fixture(scope="module")
def source() -> Iterator[SourceServer]:
    with serve_source() as server:
        yield server


def test_the_simulator_is_reproducible() -> None:
    static = StaticExponential(seed=3)
    for family in (*TRAIN_FAMILIES, *HELD_OUT_FAMILIES):
        first = run_episode(episode(family, 42), decide_fn(static.fresh()))
        again = run_episode(episode(family, 42), decide_fn(static.fresh()))
        assert first == again and first.trace
    a, b = episode("outage", 1), episode("outage", 2)
    assert (a.recover_at, a.limits) != (b.recover_at, b.limits)


def test_quick_training_beats_both_baselines_on_held_out_families(
    trained: TrainedModel, uri: str
) -> None:
    assert trained.params["data"] == "simulator only" and trained.params["history_runs"] == 0
    assert not trained.higher_is_better
    assert trained.model_score < trained.baseline_score
    assert trained.model_score < trained.references["aws_standard"]
    # Held out: seeds from HELD_OUT_SEED and two families never trained on.
    unseen = [episode(f, HELD_OUT_SEED + i) for f in HELD_OUT_FAMILIES for i in range(40)]
    assert all(o.calls >= 1 for o in run(trained.predictor, unseen))
    assert trained.score(trained.predictor) == pytest.approx(trained.model_score)
    loaded = registry.load("retry_strategy", uri=uri)
    assert loaded.version == "1" and trained.inference_ms_p50 is not None
    assert trained.inference_ms_p50 < 1.0


def test_the_model_gives_up_where_backoff_keeps_hammering(trained: TrainedModel) -> None:
    # Connections refused for a minute on a host every caller sees failing: an outage.
    outage = FailureContext(
        status=None,
        error_class="connect",
        attempt=3,
        elapsed_s=60.0,
        host_error_rate=0.95,
        remaining_s=600.0,
        attempts_left=3,
        max_interval_s=120.0,
    )
    model = clamp(trained.predictor.decide(outage), outage)
    static = clamp(StaticExponential().decide(outage), outage)
    assert static.retry and static.delay_s < 10
    assert not model.retry or model.delay_s > 2 * static.delay_s
    # Whatever the model says, the clamp keeps the spec's limits.
    last = FailureContext(status=503, attempts_left=0, remaining_s=1.0, max_interval_s=0.1)
    assert not clamp(trained.predictor.decide(last), last).retry
    short = FailureContext(status=503, attempts_left=3, remaining_s=100.0, max_interval_s=0.1)
    decision = clamp(trained.predictor.decide(short), short)
    assert not decision.retry or decision.delay_s <= 0.1


async def _fetch(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": "retry-model", "X-Step-Id": uuid.uuid4().hex}
    return await client.post("/api/v1/fetch", json=body, headers=headers)


def _settings(common_env: dict, tmp_path: Path, uri: str) -> AgentSettings:
    return AgentSettings(
        **common_env,
        allowed_roots=[str(tmp_path)],
        allow_private_hosts=["127.0.0.1"],
        mlflow_tracking_uri=uri,
    )


async def test_fetch_retry_decides_with_the_champion(
    common_env: dict, tmp_path: Path, uri: str, source: SourceServer
) -> None:
    async with asgi_client(create_app(_settings(common_env, tmp_path, uri))) as client:
        health = (await client.get("/health")).json()
        assert health["status"] == "healthy"
        assert health["checks"]["model:retry_strategy"]["version"] == "1"

        # A 429 whose Retry-After outlasts the deadline: give up now, no doomed call or wait.
        # (The static path would sleep the full 30 s: stamina honours Retry-After.)
        key = uuid.uuid4().hex
        url = f"{source.url}/flaky/{key}?fail=5&status=429&retry_after=30"
        started = time.monotonic()
        resp = await _fetch(client, {"url": url, "strategy": "adaptive", "deadline_s": 5})
        assert time.monotonic() - started < 20  # not the 30 s Retry-After: it did not wait
        assert resp.status_code == 503, resp.text
        err = resp.json()
        assert err["retryable"] is True and err["details"]["attempts"] == 1
        decision = err["details"]["decisions"][0]
        assert decision["retry"] is False and "deadline" in decision["reason"]
        assert (decision["version"], decision["source"]) == ("1", "registry")
        assert source.state.hits[f"/flaky/{key}"] == 1

        # Blips: whatever the model decides, the body's longest wait and max_attempts hold,
        # and every decision names the champion that made it.
        for fail, attempts in ((5, 2), (1, 3)):
            key = uuid.uuid4().hex
            body = {
                "url": f"{source.url}/flaky/{key}?fail={fail}&status=503",
                "strategy": "adaptive",
                "max_attempts": attempts,
                "wait_max_s": 0.5,
                "max_retry_after_s": 0.5,
            }
            resp = await _fetch(client, body)
            out = resp.json() if resp.status_code == 200 else resp.json()["details"]
            assert out["retry_decider"] == {
                "model": "retry_strategy",
                "version": "1",
                "source": "registry",
            }
            assert (
                out["attempts"] <= attempts
                and source.state.hits[f"/flaky/{key}"] == out["attempts"]
            )
            decisions = out["decisions"]
            assert len(decisions) == out["attempts"] - (resp.status_code == 200)
            assert all(d["delay_s"] <= 0.5 and d["version"] == "1" for d in decisions)
            assert all(d["retry"] for d in decisions[:-1])
            if resp.status_code != 200:
                assert decisions[-1]["retry"] is False


async def test_fetch_retry_falls_back_when_the_registry_is_unreachable(
    common_env: dict, tmp_path: Path, source: SourceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = _settings(common_env, tmp_path, "http://127.0.0.1:9")
    async with asgi_client(create_app(settings)) as client:
        health = (await client.get("/health")).json()
        assert health["status"] == "degraded"
        assert health["checks"]["model:retry_strategy"]["source"] == "baseline"
        key = uuid.uuid4().hex
        body = {
            "url": f"{source.url}/flaky/{key}?fail=1&status=503",
            "strategy": "adaptive",
            "wait_max_s": 0.1,
        }
        resp = await _fetch(client, body)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert out["retry_decider"]["source"] == "baseline" and out["attempts"] == 2
        assert "exponential backoff" in out["decisions"][0]["reason"]


async def test_the_engine_advisor_loads_the_champion_off_the_hot_path(uri: str) -> None:
    advisor = RetryAdvisor(uri, refresh_s=3600)
    await advisor.start()
    try:
        assert advisor.provenance() == {
            "model": "retry_strategy",
            "version": "1",
            "source": "registry",
        }
        decision, record = advisor.decide(
            step_row=1,
            agent="data-fetch-retry",
            attempt=1,
            attempts_left=2,
            max_interval_s=0.5,
            remaining_s=30.0,
            error={"code": "fetch_exhausted", "status": 503},
            retry_after_s=None,
        )
        assert record["version"] == "1" and record["failure"]["status"] == 503
        assert not decision.retry or decision.delay_s <= 0.5
    finally:
        await advisor.stop()
    baseline = RetryAdvisor(None)
    await baseline.start()
    assert baseline.provenance()["source"] == "baseline"


def _step(step_id: str) -> ClaimedStep:
    return ClaimedStep(
        id=abs(hash(step_id)) % 10**9, run_id=uuid.uuid4(), step_id=step_id, role="action",
        map_index=-1, agent="data-fetch-retry", action="fetch", attempts=1, max_attempts=3,
        outputs={},
    )  # fmt: skip


async def test_the_engine_asks_the_model_only_for_adaptive_steps(
    common_env: dict, tmp_path: Path, uri: str, source: SourceServer
) -> None:
    """A real fetch-retry agent over HTTP, the engine's step call with and without the model."""
    agent = create_app(_settings(common_env, tmp_path, uri))
    key = uuid.uuid4().hex
    params = {"url": f"{source.url}/flaky/{key}?fail=9&status=503", "max_attempts": 1}
    steps = [
        {"id": name, "agent": "data-fetch-retry", "action": "fetch", "params": params,
         "retry": {"max_attempts": 3, "max_interval_s": 30, "strategy": name}}
        for name in ("static", "adaptive")
    ]  # fmt: skip
    run_context = RunContext(
        spec=WorkflowSpec.model_validate({"name": "retry", "steps": steps}),
        inputs={},
        trace_id="t",
        deadline_at=None,
        map_items={},
    )
    advisor = RetryAdvisor(uri, refresh_s=3600)
    await advisor.start()
    with serve(agent, lifespan="on") as url:
        client = AgentClient({"data-fetch-retry": url}, SERVICE_TOKEN)
        try:
            static, _ = await run_step(
                _step("static"), run_context, client, worker="w", advisor=advisor
            )
            adaptive, _ = await run_step(
                _step("adaptive"), run_context, client, worker="w", advisor=advisor
            )
        finally:
            await client.aclose()
            await advisor.stop()
    assert static.error is not None and static.error["code"] == "fetch_exhausted"
    assert static.decision is None and static.retry_in_s is not None  # the static backoff
    assert adaptive.decision is not None
    assert (adaptive.decision["version"], adaptive.decision["source"]) == ("1", "registry")
    assert adaptive.decision["failure"]["error_class"] == "fetch_exhausted"
    if adaptive.decision["retry"]:
        assert adaptive.retry_in_s == adaptive.decision["delay_s"] <= 30
    else:
        assert adaptive.retry_in_s is None


def test_recorded_retries_are_folded_into_the_table() -> None:
    """An engine attempt log (decision, then the next attempt's outcome) becomes samples."""
    failure = {"status": 503, "error_class": "fetch_exhausted", "attempt": 1, "elapsed_s": 0.1}
    log = [
        {"outcome": "failed", "decision": {"retry": True, "delay_s": 8.0, "failure": failure}},
        {"outcome": "succeeded"},
    ]
    found = samples_from_logs([("run-1", log), ("run-2", [{"outcome": "failed"}])])
    assert (found.runs, found.delays, found.succeeded) == (1, [8.0], [True])
    acc = Accumulator()
    assert add_history(acc, found) == 1
    cell = keys(found.failures[0])[-3]  # (class, has Retry-After)
    column = list(GRID).index(8.0)
    assert acc.weights[cell][column] > 0 and acc.sums[cell][column] == acc.weights[cell][column]


def test_the_newest_recorded_retries_are_held_out_and_scored() -> None:
    """A source the simulator does not know (its 503s recover after 8 s, never after 1 s):
    the newest fifth of its recorded retries is held out by time, and the table that learned
    from the older ones predicts them better than the simulator alone and the base rate."""
    failure = {"status": 503, "error_class": "fetch_exhausted", "attempt": 1, "elapsed_s": 0.1}
    rows = []
    for i in range(300):
        delay = 8.0 if i % 2 else 1.0
        log = [
            {
                "outcome": "failed",
                "decision": {"retry": True, "delay_s": delay, "failure": failure},
            },
            {"outcome": "succeeded" if delay == 8.0 else "failed"},
        ]
        rows.append((f"run-{i}", log, 1_000.0 + i))
    history, held_out = samples_from_logs(rows).split()
    assert (len(history.failures), len(held_out.failures)) == (240, 60)
    assert min(held_out.at) > max(history.at)  # a time slice, not a random draw
    acc = Accumulator()
    simulator_samples(episodes(TRAIN_FAMILIES, range(40)), 0, acc)
    simulator_only = acc.model()
    add_history(acc, history)
    base_rate = sum(history.succeeded) / len(history.succeeded)
    scores = history_brier(
        held_out, {"model": acc.model(), "simulator_only": simulator_only}, base_rate
    )
    assert scores["history_brier_model"] < scores["history_brier_simulator_only"]
    assert scores["history_brier_model"] < scores["history_brier_base_rate"], scores


def test_too_little_history_is_all_trained_on() -> None:
    failure = {"status": 503, "error_class": "fetch_exhausted", "attempt": 1, "elapsed_s": 0.1}
    log = [
        {"outcome": "failed", "decision": {"retry": True, "delay_s": 2.0, "failure": failure}},
        {"outcome": "succeeded"},
    ]
    found = samples_from_logs([(f"run-{i}", log, float(i)) for i in range(50)])
    history, held_out = found.split()
    assert len(history.failures) == 50 and held_out.failures == []
