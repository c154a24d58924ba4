"""data-fetch-retry against a real local HTTP source: retries, Retry-After, breaker, resume."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.base.settings import AgentSettings
from agents.data_fetch_retry.app import create_app
from tests.agents.source_api import API_KEY, TOKEN, SourceServer, file_bytes, serve_source
from tests.conftest import asgi_client, service_auth


@pytest.fixture(scope="module")
def source() -> Iterator[SourceServer]:
    with serve_source() as server:
        yield server


@pytest.fixture
def settings(common_env: dict, tmp_path: Path) -> AgentSettings:
    return AgentSettings(
        **common_env, allowed_roots=[str(tmp_path)], allow_private_hosts=["127.0.0.1"]
    )


@pytest.fixture
async def client(settings: AgentSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(settings)) as c:
        yield c


async def fetch(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    *,
    step: str | None = None,
    key: str | None = None,
) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": "fetch-tests", "X-Step-Id": step or uuid.uuid4().hex}
    if key:
        headers["Idempotency-Key"] = key
    return await client.post("/api/v1/fetch", json=body, headers=headers)


def read(path: str) -> bytes:
    return Path(path).read_bytes()


def fast(**extra: Any) -> dict[str, Any]:
    """Retry settings that keep the tests quick."""
    return {"wait_initial_s": 0.01, "wait_max_s": 0.05, "wait_jitter_s": 0.0, **extra}


async def test_fetch_downloads_into_the_run_dir(client: httpx.AsyncClient, source: SourceServer):
    name = f"orders-{uuid.uuid4().hex[:6]}.bin"
    expected = hashlib.sha256(file_bytes(name)).hexdigest()
    resp = await fetch(client, {"url": f"{source.url}/files/{name}", "expected_sha256": expected})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["sha256"] == expected
    assert out["bytes"] == len(file_bytes(name))
    assert out["filename"] == name and out["attempts"] == 1 and out["status_code"] == 200
    assert read(out["uri"]) == file_bytes(name)
    assert Path(out["uri"]).name == name
    # The output is what the published result schema says, no more (a static fetch: no decider).
    listed = (await client.get("/api/v1/actions", headers=service_auth())).json()
    result = listed["fetch"]["result"]
    assert set(out) == set(result["properties"]) - {"retry_decider", "decisions"}
    assert set(result["required"]) <= set(out)
    assert "result" not in listed["noop"]  # an untyped action publishes no schema


async def test_transient_failures_are_retried_honouring_retry_after(
    client: httpx.AsyncClient, source: SourceServer
):
    key = uuid.uuid4().hex
    url = f"{source.url}/flaky/{key}?fail=2&status=429&retry_after=1"
    started = time.monotonic()
    resp = await fetch(client, {"url": url, **fast()})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["attempts"] == 3
    # two Retry-After: 1 waits, not the 0.01 s backoff
    assert out["waited_s"] >= 1.9 and time.monotonic() - started >= 1.9
    assert out["sha256"] == hashlib.sha256(file_bytes(key, 5_000)).hexdigest()


async def test_a_404_is_not_retried(client: httpx.AsyncClient, source: SourceServer):
    resp = await fetch(client, {"url": f"{source.url}/status/404", **fast()})
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == "fetch_rejected" and body["retryable"] is False
    assert body["details"]["status_code"] == 404 and body["details"]["attempts"] == 1
    assert source.state.hits["/status/404"] == 1


async def test_exhausted_retries_are_a_retryable_error_then_the_circuit_opens(
    settings: AgentSettings,
):
    with serve_source() as own:  # its own host:port, so its breaker is its own
        async with asgi_client(create_app(settings)) as client:
            body = {"url": f"{own.url}/status/503", "max_attempts": 3, **fast()}
            body["breaker"] = {"fail_max": 3, "reset_timeout_s": 60}
            resp = await fetch(client, body)
            assert resp.status_code == 503, resp.text
            err = resp.json()
            assert err["retryable"] is True and err["error"] == "fetch_exhausted"
            assert err["details"]["attempts"] == 3
            assert own.state.hits["/status/503"] == 3

            again = await fetch(client, body)
            assert again.status_code == 503
            assert again.json()["error"] == "circuit_open"
            assert 0 < float(again.headers["Retry-After"]) <= 60
            assert own.state.hits["/status/503"] == 3  # the open circuit spared the host


async def test_a_dropped_connection_resumes_with_range(
    client: httpx.AsyncClient, source: SourceServer
):
    name = f"big-{uuid.uuid4().hex[:6]}.bin"
    resp = await fetch(client, {"url": f"{source.url}/drop/{name}", **fast()})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    data = file_bytes(name)
    assert out["attempts"] == 2
    assert 0 < out["resumed_from"] < len(data)
    assert out["status_code"] == 206
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert read(out["uri"]) == data
    assert source.state.ranges[name] == [None, f"bytes={out['resumed_from']}-"]


async def test_a_partial_file_from_an_earlier_attempt_is_resumed(
    client: httpx.AsyncClient, source: SourceServer, common_env: dict
):
    name = f"part-{uuid.uuid4().hex[:6]}.bin"
    data = file_bytes(name)
    step = uuid.uuid4().hex
    run_dir = Path(common_env["data_root"]) / "runs" / "fetch-tests" / step
    run_dir.mkdir(parents=True)
    (run_dir / f"{name}.part").write_bytes(data[:1000])
    resp = await fetch(client, {"url": f"{source.url}/files/{name}"}, step=step)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["resumed_from"] == 1000 and out["bytes"] == len(data)
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert source.state.ranges[name] == ["bytes=1000-"]
    assert not (run_dir / f"{name}.part").exists()


async def test_size_limit_and_checksum_are_enforced(
    client: httpx.AsyncClient, source: SourceServer
):
    name = f"limit-{uuid.uuid4().hex[:6]}.bin"
    big = await fetch(client, {"url": f"{source.url}/files/{name}", "max_bytes": 1000})
    assert big.status_code == 422 and big.json()["error"] == "too_large"
    wrong = await fetch(client, {"url": f"{source.url}/files/{name}", "expected_sha256": "0" * 64})
    assert wrong.status_code == 422 and wrong.json()["error"] == "checksum_mismatch"


async def test_per_host_rate_limit_spaces_requests(client: httpx.AsyncClient, source: SourceServer):
    limit = {"requests": 1, "per_s": 0.4}
    started = time.monotonic()
    for _ in range(4):
        name = f"rl-{uuid.uuid4().hex[:6]}"
        resp = await fetch(client, {"url": f"{source.url}/files/{name}", "rate_limit": limit})
        assert resp.status_code == 200, resp.text
    # one request at once, then one every 0.4 s
    assert time.monotonic() - started >= 1.1
    assert resp.json()["rate_limited_s"] > 0.2


async def test_ssrf_refuses_metadata_and_unlisted_private_hosts(
    common_env: dict, tmp_path: Path, source: SourceServer
):
    # Even an allowlist naming the metadata range does not open it.
    settings = AgentSettings(
        **common_env,
        allowed_roots=[str(tmp_path)],
        allow_private_hosts=["127.0.0.1", "169.254.0.0/16"],
    )
    async with asgi_client(create_app(settings)) as client:
        for url in (
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "http://[::ffff:169.254.169.254]/latest/meta-data/",
            "http://10.20.30.40/internal",
            "http://127.0.0.2:1/x",  # loopback, but outside the listed 127.0.0.1
            f"{source.url}/redirect?to=http://169.254.169.254/latest/meta-data/",
        ):
            resp = await fetch(client, {"url": url})
            assert resp.status_code == 422, (url, resp.text)
            assert resp.json()["error"] == "host_not_allowed", url
            assert resp.json()["retryable"] is False


async def test_credentials_come_from_the_environment_and_are_never_echoed(
    client: httpx.AsyncClient, source: SourceServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ORDERS_API_KEY", API_KEY)
    monkeypatch.setenv("ORDERS_API_TOKEN", TOKEN)
    name = f"auth-{uuid.uuid4().hex[:6]}"
    body = {
        "url": f"{source.url}/flaky/{name}?fail=0&json=1",
        "auth": {
            "type": "api_key",
            "credential": "ORDERS_API_KEY",
            "place": "query",
            "name": "api_key",
        },
    }
    resp = await fetch(client, body)
    assert resp.status_code == 200, resp.text
    assert API_KEY not in resp.text
    # a query parameter whose name does not look secret is still scrubbed from errors
    hidden = {"type": "api_key", "credential": "ORDERS_API_KEY", "place": "query", "name": "k"}
    rejected = await fetch(client, {"url": f"{source.url}/status/404", "auth": hidden})
    assert rejected.status_code == 422 and "127.0.0.1" in rejected.text
    assert API_KEY not in rejected.text

    inline = await fetch(
        client, {"url": f"{source.url}/files/x", "headers": {"Authorization": TOKEN}}
    )
    assert inline.status_code == 422 and TOKEN not in inline.text
    userinfo = await fetch(client, {"url": f"http://u:{TOKEN}@127.0.0.1:1/x"})
    assert userinfo.status_code == 422 and TOKEN not in userinfo.text
    missing = await fetch(
        client, {"url": f"{source.url}/files/x", "auth": {"type": "bearer", "credential": "NOPE_X"}}
    )
    assert missing.status_code == 422 and missing.json()["error"] == "credential_missing"
    reserved = await fetch(
        client,
        {"url": f"{source.url}/files/x", "auth": {"type": "bearer", "credential": "SERVICE_TOKEN"}},
    )
    assert reserved.status_code == 422 and reserved.json()["error"] == "credential_not_allowed"


async def test_a_repeated_idempotency_key_replays_without_refetching(
    client: httpx.AsyncClient, source: SourceServer
):
    name = f"idem-{uuid.uuid4().hex[:6]}"
    key = uuid.uuid4().hex
    step = uuid.uuid4().hex
    first = await fetch(client, {"url": f"{source.url}/files/{name}"}, step=step, key=key)
    second = await fetch(client, {"url": f"{source.url}/files/{name}"}, step=step, key=key)
    assert first.status_code == second.status_code == 200
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.json() == first.json()
    assert source.state.hits[f"/files/{name}"] == 1
