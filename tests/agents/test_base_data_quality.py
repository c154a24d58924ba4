"""The base-data-quality agent over HTTP, beside the built-ins whose actions it serves: its
`check` answers as the data-merger's `quality_check` does over the same files, passing or
failing, and its `classify` as the data-converter's; a dataset stays the merger's to check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from agents.base.settings import AgentSettings
from agents.base_data_quality.app import create_app as create_quality
from agents.data_converter.app import create_app as create_converter
from agents.data_merger.app import create_app as create_merger
from shared.spec.catalog import AGENT_ACTIONS
from tests.conftest import asgi_client, service_auth


@dataclass
class Agents:
    quality: httpx.AsyncClient
    merger: httpx.AsyncClient
    converter: httpx.AsyncClient


@pytest.fixture
async def agents(common_env: dict, tmp_path: Path) -> AsyncIterator[Agents]:
    settings = AgentSettings(**common_env, allowed_roots=[str(tmp_path)])
    async with (
        asgi_client(create_quality(settings)) as quality,
        asgi_client(create_merger(settings)) as merger,
        asgi_client(create_converter(settings)) as converter,
    ):
        yield Agents(quality, merger, converter)


async def call(client: httpx.AsyncClient, action: str, body: dict[str, Any]) -> httpx.Response:
    headers = {**service_auth(), "X-Run-Id": "quality-agent-tests", "X-Step-Id": action}
    return await client.post(f"/api/v1/{action}", json=body, headers=headers)


@pytest.fixture
def orders(tmp_path: Path) -> list[Any]:
    """Two staged batches, as a convert hands them on: 5 orders, one without an email."""
    parts = [
        {"order_id": [1, 2, 3], "email": ["ada@example.com", "grace@example.com", None]},
        {"order_id": [4, 5], "email": ["alan@example.com", "edsger@example.com"]},
    ]
    amounts, placed = [[12.5, 99.0, 250.0], [7.25, 40.0]], [["2026-01-15T08:00:00"] * 3, []]
    placed[1] = ["2026-01-17T11:00:00", "2026-01-18T12:00:00"]
    for index, part in enumerate(parts):
        frame = pl.DataFrame({**part, "amount": amounts[index], "placed_at": placed[index]})
        frame = frame.with_columns(pl.col("placed_at").str.to_datetime())
        frame.write_parquet(tmp_path / f"part-{index}.parquet")
    # A path, and a manifest as a convert's output lists it.
    return [str(tmp_path / "part-0.parquet"), {"uri": str(tmp_path / "part-1.parquet")}]


async def test_it_serves_check_and_classify_though_no_catalog_names_it(agents: Agents) -> None:
    assert "base-data-quality" not in AGENT_ACTIONS  # an external agent: registered at run time
    health = await agents.quality.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["agent"] == "base-data-quality"
    assert health.json()["actions"] == ["check", "classify", "noop"]
    listed = (await agents.quality.get("/api/v1/actions", headers=service_auth())).json()
    merger = (await agents.merger.get("/api/v1/actions", headers=service_auth())).json()
    assert (
        listed["check"]["body"]["properties"]["checks"]
        == (merger["quality_check"]["body"]["properties"]["checks"])
    )


async def test_check_answers_as_the_mergers_quality_check(
    agents: Agents, orders: list[Any]
) -> None:
    good = {
        "checks": {
            "row_count_min": 5,
            "not_null": ["order_id"],
            "unique": ["order_id"],
            "ranges": {"amount": {"min": 0, "max": 1000}, "placed_at": {"min": "2026-01-01"}},
        },
        "collected": {"announced": 5, "read": 5, "outcome": "complete"},
    }
    passed = await call(agents.quality, "check", {"files": orders, **good})
    assert passed.status_code == 200, passed.text
    result = passed.json()
    assert result["passed"] is True and result["rows"] == 5
    assert [r["check"] for r in result["results"]] == [
        "row_count_min",
        "not_null",
        "unique",
        "range",
        "range",
        "announced_matches",
    ]
    dates = result["results"][4]["observed"]
    assert dates["outside"] == 0 and dates["min"].startswith("2026-01-15T08:00:00")
    same = await call(agents.merger, "quality_check", {"files": orders, **good})
    assert same.status_code == 200 and same.json() == result

    bad = {
        "checks": {"row_count_max": 4, "not_null": ["email"], "ranges": {"amount": {"max": 100}}},
        "collected": {"announced": 6, "read": 5, "outcome": "complete"},
    }
    failed = await call(agents.quality, "check", {"files": orders, **bad})
    assert failed.status_code == 422, failed.text
    error = failed.json()
    assert error["error"] == "quality_failed" and error["retryable"] is False
    assert error["message"] == (
        "quality checks failed: row_count_max, not_null email, range amount, announced_matches"
    )
    assert error["details"]["rows"] == 5
    assert {r["check"]: r["observed"] for r in error["details"]["results"]} == {
        "not_null": 1,
        "range": {"outside": 1, "min": 7.25, "max": 250.0},
        "row_count_max": 5,
        "announced_matches": 5,
    }
    refused = await call(agents.merger, "quality_check", {"files": orders, **bad})
    assert refused.status_code == 422 and refused.json() == error


async def test_check_refuses_a_dataset_and_files_it_cannot_read(
    agents: Agents, orders: list[Any], tmp_path: Path
) -> None:
    checks = {"row_count_min": 1}
    dataset = await call(agents.quality, "check", {"dataset": "orders", "checks": checks})
    assert dataset.status_code == 422
    fields = {d["field"] for d in dataset.json()["details"]}
    assert fields == {"files", "dataset"}  # files missing; a dataset is the merger's to check

    outside = await call(agents.quality, "check", {"files": ["/etc/hostname"], "checks": checks})
    assert outside.status_code == 422, outside.text
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    broken = await call(
        agents.quality, "check", {"files": [str(tmp_path / "broken.parquet")], "checks": checks}
    )
    assert broken.status_code == 422 and broken.json()["error"] == "parse_error", broken.text


async def test_classify_answers_as_the_converters(agents: Agents, tmp_path: Path) -> None:
    path = tmp_path / "people.parquet"
    pl.DataFrame(
        {
            "customer_name": ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Barbara Liskov"],
            "email": ["ada@example.com", "grace@example.com", "alan@example.com", "b@example.org"],
            "product": ["Desk Lamp", "Monitor Arm", "Webcam Cover", "Laptop Stand"],
            "amount": [1.5, 2.5, 3.5, 4.5],
        }
    ).write_parquet(path)
    body = {"files": [str(path)], "sample_rows": 100}
    classified = await call(agents.quality, "classify", body)
    assert classified.status_code == 200, classified.text
    report = classified.json()
    assert report["pii_columns"] == ["customer_name", "email"]
    assert {c["column"]: c["category"] for c in report["columns"]} == {
        "customer_name": "name",
        "email": "email",
        "product": "none",
        "amount": "none",
    }
    assert "Ada Lovelace" not in classified.text  # counts only, never a sampled value
    assert (await call(agents.converter, "classify", body)).json() == report
