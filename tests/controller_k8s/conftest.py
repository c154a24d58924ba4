"""Fixtures: a fake Kubernetes API server on 127.0.0.1 and a kubernetes client pointed at it.

No real Kubernetes API server can run here, so the watcher is tested against the fake in
fake_kube_api.py, at the HTTP boundary, through the official kubernetes client.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from .fake_kube_api import FakeKubeApi


@pytest.fixture
def fake_api() -> Iterator[FakeKubeApi]:
    api = FakeKubeApi(token="test-token")
    api.start()
    yield api
    api.stop()


@pytest.fixture
def api_client(fake_api: FakeKubeApi) -> Iterator[client.ApiClient]:
    configuration = client.Configuration(host=fake_api.url)
    configuration.api_key = {"BearerToken": "test-token"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    api_client = client.ApiClient(configuration)
    yield api_client
    api_client.close()
