"""Fixtures: a fake Kubernetes API server on 127.0.0.1, a kubernetes client pointed at it, and
the database the kinds write to.

No real Kubernetes API server can run here, so the informers are tested against the fake in
fake_kube_api.py, at the HTTP boundary, through the official kubernetes client. The fake serves
all five kinds; a test module's `PLURAL` names the one its `fake_api.get` and `delete` mean.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes import client
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db.session import create_engine, create_sessionmaker
from shared.settings import CommonSettings
from tests.conftest import DATABASE_URL, SERVICE_TOKEN, fresh_schema
from tests.external_agent import create_app as external_agent
from tests.serving import serve

from .fake_kube_api import TOKEN, FakeKubeApi, client_for


@pytest.fixture
def fake_api(request: pytest.FixtureRequest) -> Iterator[FakeKubeApi]:
    api = FakeKubeApi(token=TOKEN, plural=getattr(request.module, "PLURAL", "workflows"))
    api.start()
    yield api
    api.stop()


@pytest.fixture
def api_client(fake_api: FakeKubeApi) -> Iterator[client.ApiClient]:
    api_client = client_for(fake_api)
    yield api_client
    api_client.close()


@pytest.fixture
def agent_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another team's agent (tests/external_agent.py, not on agents/base), served over HTTP."""
    app = external_agent(str(tmp_path_factory.mktemp("agent") / "ledger.sqlite"), SERVICE_TOKEN)
    with serve(app) as url:
        yield url


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh migrated schema of the test's own."""
    yield from fresh_schema()


@pytest.fixture
async def db(schema: str) -> AsyncIterator[async_sessionmaker]:
    """A sessionmaker on the test's schema."""
    engine = create_engine(CommonSettings(database_url=DATABASE_URL, db_schema=schema))
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def env(module_env: dict) -> AsyncIterator[dict]:
    """The module's schema (tests/conftest.py's `module_env`), emptied before each test."""
    from tests.schedules.helpers import truncate

    await truncate(module_env)
    yield module_env
