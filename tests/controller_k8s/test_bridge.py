"""The watcher wired to the real definitions table (fake Kubernetes API, real PostgreSQL).

The Kubernetes API server is the fake of fake_kube_api.py (none can run here); everything on
the controller's side is real: validation, the definitions service and the runs table.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator

import pytest
from kubernetes import client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.kubernetes.bridge import build_watcher
from services.orchestrator_controller.settings import ControllerSettings
from shared.db.models import WorkflowDefinition
from shared.db.session import create_engine, create_sessionmaker
from shared.spec.models import WorkflowSpec
from shared.state.runs import NewRun, create_runs

from .fake_kube_api import FakeKubeApi
from .test_watcher import example, ready


@pytest.fixture
async def sessionmaker(common_env: dict) -> AsyncIterator[async_sessionmaker]:
    engine = create_engine(ControllerSettings(**common_env))
    yield create_sessionmaker(engine)
    await engine.dispose()


async def test_resources_become_definitions_and_report_their_last_run(
    fake_api: FakeKubeApi,
    api_client: client.ApiClient,
    sessionmaker: async_sessionmaker,
    common_env: dict,
) -> None:
    good = example("standard")
    good["metadata"]["name"] = "bridge-good"
    good["spec"]["definition"]["name"] = "bridge_good"
    bad = copy.deepcopy(good)
    bad["metadata"]["name"] = "bridge-bad"
    bad["spec"]["definition"]["name"] = "bridge_bad"
    bad["spec"]["definition"]["steps"][0]["agent"] = "data-nowhere"
    fake_api.apply(good)
    fake_api.apply(bad)
    settings = ControllerSettings(**common_env, kubernetes_namespace="ingest")
    watcher = build_watcher(settings, sessionmaker, api_client, status_interval_s=3600)

    await watcher.resync()

    async with sessionmaker() as session:
        names = set((await session.execute(select(WorkflowDefinition.name))).scalars().all())
    assert "bridge_good" in names and "bridge_bad" not in names
    assert ready(fake_api.get("bridge-good"))["status"] == "True"  # type: ignore[index]
    refused = ready(fake_api.get("bridge-bad"))
    assert refused is not None and refused["reason"] == "InvalidSpec"
    assert "steps[0].agent" in refused["message"]

    async with sessionmaker() as session, session.begin():
        spec = WorkflowSpec.model_validate(good["spec"]["definition"])
        [run] = await create_runs(
            session, [NewRun(spec=spec, inputs={})], schema=settings.db_schema
        )
    assert await watcher.sync_status() >= 1
    assert fake_api.get("bridge-good")["status"]["lastRun"]["runId"] == str(run.id)
    assert fake_api.get("bridge-good")["status"]["lastRun"]["status"] == "PENDING"
