"""secure_api and realtime_stream end to end: PII protected and secrets kept out of the record;
stream entries merged exactly once across runs, including after a crash before the ack."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.conftest import REDIS_URL, SERVICE_TOKEN
from tests.datasets import merged_files, merged_rows
from tests.e2e.conftest import ORDERS_TOKEN, Platform
from tests.e2e.test_workflows import run_workflow, step
from tests.serving import serve

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Radia"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Perlman", "Hamilton"]


def customers(first: int, last: int, hour: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "full_name": f"{FIRST[i % len(FIRST)]} {LAST[i % len(LAST)]}",
            "email": f"person{i}@example.com",
            "phone": f"+1 555-010-{i:04d}",
            "card_number": "4111 1111 1111 1111",
            "amount": i * 2.5,
            "updated_at": f"2026-11-27T{hour}:{i % 60:02d}:00Z",
        }
        for i in range(first, last + 1)
    ]


def api(rows: list[dict[str, Any]], seen: list[str | None]) -> FastAPI:
    app = FastAPI()

    @app.get("/customers")
    async def listing(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {ORDERS_TOKEN}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        since = request.query_params.get("since")
        seen.append(since)
        chosen = [r for r in rows if since is None or r["updated_at"] >= since.strip('"')]
        chosen.sort(key=lambda r: (r["updated_at"], r["id"]))
        page = int(request.query_params.get("page", 1))
        return JSONResponse({"data": chosen[(page - 1) * 10 : page * 10]})

    return app


def test_secure_api_protects_pii_keeps_the_secret_out_and_resumes(platform: Platform) -> None:
    rows = customers(1, 35)
    seen: list[str | None] = []
    dataset = f"sec_{uuid.uuid4().hex[:8]}"
    with serve(api(rows, seen)) as url:
        inputs = {
            "url": f"{url}/customers",
            "credential": "E2E_ORDERS_TOKEN",
            "pagination": {"type": "page", "page_size": 10},
            "records_path": "data",
            "incremental": {"field": "updated_at", "param": "since"},
            "state_key": f"e2e:{dataset}",
            "dataset": dataset,
            "primary_key": ["id"],
        }
        run = run_workflow(platform, "secure_api", inputs)
        assert run["status"] == "SUCCEEDED", json.dumps(run)[:3000]
        merged = step(run, "merge")["output"]
        table = merged_rows(merged)
        assert sorted(r["id"] for r in table) == list(range(1, 36))
        by_id = {r["id"]: r for r in table}
        for source in rows:
            kept = by_id[source["id"]]
            assert kept["amount"] == source["amount"]
            for column in ("email", "phone", "card_number", "full_name"):
                assert kept[column] != source[column] and len(kept[column]) == 64
        raw = b"".join(Path(uri).read_bytes() for uri in merged_files(merged))
        assert b"person1@example.com" not in raw and b"4111 1111" not in raw
        protected = step(run, "protect")["output"]["protected"]
        assert set(protected) == {"email", "phone", "card_number", "full_name"}

        # The secret is nowhere in what the platform recorded or published.
        with platform.api() as client:
            record = client.get(f"/workflows/{run['run_id']}").text
        assert ORDERS_TOKEN not in record
        events = redis.Redis.from_url(REDIS_URL)
        for key in events.scan_iter(f"{platform.stream_prefix}ingestion.*"):
            entries: Any = events.xrange(key)
            for _id, fields in entries:
                assert ORDERS_TOKEN.encode() not in fields[b"event"]

        # The next run starts from the committed cursor and sees only newer changes.
        rows.extend(customers(36, 40, hour=11))
        second = run_workflow(platform, "secure_api", inputs)
        assert second["status"] == "SUCCEEDED", json.dumps(second)[:3000]
        assert step(second, "collect")["output"]["cursor_from"] == "state"
        assert seen[-1] is not None  # the lower bound went to the API
        final = merged_rows(step(second, "merge")["output"])
        assert sorted(r["id"] for r in final) == list(range(1, 41))


def test_realtime_stream_merges_every_entry_once_across_runs_and_a_crash(
    platform: Platform,
) -> None:
    stream = f"{platform.stream_prefix}e2e-events-{uuid.uuid4().hex[:6]}"
    dataset = f"rt_{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    added: list[Any] = [
        client.xadd(stream, {"data": json.dumps({"sensor": i % 3, "reading": i})})
        for i in range(30)
    ]
    ids = [entry_id.decode() for entry_id in added]
    inputs = {
        "redis_url_env": "E2E_STREAM_REDIS_URL",
        "stream": stream,
        "group": "e2e",
        "consumer": "realtime",
        "batch_size": 12,
        "dataset": dataset,
    }
    try:
        first = run_workflow(platform, "realtime_stream", inputs)
        assert first["status"] == "SUCCEEDED", json.dumps(first)[:3000]
        assert step(first, "read")["output"]["count"] == 12

        # A run that died after reading, before its ack: entries 13..24 stay pending.
        collector = f"http://127.0.0.1:{platform.ports.agents['data-collector']}"
        source = {
            "kind": "redis_stream",
            "url_env": "E2E_STREAM_REDIS_URL",
            "stream": stream,
            "group": "e2e",
            "consumer": "realtime",
            "count": 12,
        }
        crashed = httpx.post(
            f"{collector}/api/v1/collect",
            json={"source": source},
            headers={"Authorization": f"Bearer {SERVICE_TOKEN}", "X-Run-Id": "crashed-run"},
            timeout=30,
        )
        assert crashed.status_code == 200 and crashed.json()["count"] == 12

        outputs = []
        for _ in range(3):  # the pending 12, the last 6, then nothing new
            run = run_workflow(platform, "realtime_stream", inputs)
            assert run["status"] == "SUCCEEDED", json.dumps(run)[:3000]
            outputs.append(step(run, "merge")["output"])
        assert outputs[0]["inserted"] == 12
        assert outputs[1]["inserted"] == 6
        assert outputs[2]["empty_batch"] is True
        table = merged_rows(outputs[-1])
        assert sorted(r["_stream_id"] for r in table) == sorted(ids)
        assert sorted(r["reading"] for r in table) == list(range(30))
        assert client.xpending(stream, "e2e")["pending"] == 0
    finally:
        client.delete(stream)
