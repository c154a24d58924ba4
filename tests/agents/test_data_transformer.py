"""data-transformer over HTTP: SQL over converted files, the sandbox, limits, errors by field."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agents.base.settings import AgentSettings
from agents.data_converter.app import create_app as create_converter
from agents.data_merger.app import create_app as create_merger
from agents.data_transformer.app import create_app as create_transformer
from agents.data_transformer.settings import TransformerSettings
from tests.conftest import SAMPLES, asgi_client, service_auth
from tests.datasets import merged_rows

ORDERS = [str(SAMPLES / "test" / f"orders_2026_11_{part}.csv") for part in "ab"]


@pytest.fixture
async def transformer(common_env: dict) -> AsyncIterator[httpx.AsyncClient]:
    settings = TransformerSettings(
        **common_env, transform_max_rows=1000, transform_max_sql_chars=2000
    )
    async with asgi_client(create_transformer(settings)) as client:
        yield client


async def call(
    client: httpx.AsyncClient,
    action: str,
    body: dict[str, Any],
    step: str = "tx",
    key: str | None = None,
) -> httpx.Response:
    sent = {**service_auth(), "X-Run-Id": "transform-tests", "X-Step-Id": step}
    if key is not None:
        sent["Idempotency-Key"] = key
    return await client.post(f"/api/v1/{action}", json=body, headers=sent)


def staged(common_env: dict, name: str, table: pa.Table) -> str:
    """A Parquet file where an upstream step would have staged it (under DATA_ROOT)."""
    path = Path(common_env["data_root"]) / "runs" / "transform-tests" / "convert" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return str(path)


def amounts_by_customer(sources: list[str]) -> dict[str, list[float]]:
    """What the sample CSVs hold, read straight from them."""
    amounts: dict[str, list[float]] = defaultdict(list)
    for source in sources:
        with open(source, newline="") as handle:
            for row in csv.DictReader(handle):
                amounts[row["customer"]].append(float(row["amount"]))
    return amounts


def text_file(path: Path, text: str) -> Path:
    """A file of `text` (named .parquet, yet not Parquet)."""
    path.write_text(text)
    return path


def nothing_at(*paths: Path) -> bool:
    """Whether none of `paths` exists (the sandbox wrote nothing)."""
    return not any(p.exists() for p in paths)


def refusal(response: httpx.Response, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["retryable"] is False
    assert body["message"].startswith(f"{field}:"), body  # the message names the field first
    fields = [d["field"] for d in body.get("details") or []]
    assert any(f == field or f.startswith(f"{field}.") for f in fields), body
    return body


async def test_convert_transform_merge_aggregates_the_sample_orders(
    common_env: dict, transformer: httpx.AsyncClient
) -> None:
    settings = AgentSettings(**common_env, allowed_roots=[str(SAMPLES)])
    async with (
        asgi_client(create_converter(settings)) as converter,
        asgi_client(create_merger(settings)) as merger,
    ):
        converted = await call(converter, "convert", {"files": ORDERS, "format": "csv"}, "conv")
        assert converted.status_code == 200, converted.text
        sql = (
            "SELECT customer, count(*) AS orders, round(sum(amount), 2) AS total "
            "FROM batch GROUP BY customer ORDER BY customer"
        )
        response = await call(
            transformer, "transform", {"sql": sql, "inputs": {"batch": converted.json()}}
        )
        assert response.status_code == 200, response.text
        result = response.json()
        merged = await call(
            merger,
            "merge",
            {
                "batches": result,
                "dataset": "tx_customers",
                "write_disposition": "merge",
                "primary_key": ["customer"],
            },
            "merge",
        )
        assert merged.status_code == 200, merged.text

    expected = amounts_by_customer(ORDERS)
    assert result["rows"] == len(expected)
    assert result["schema"] == {"customer": "string", "orders": "int64", "total": "double"}
    assert result["inputs"] == {"batch": {"files": 2, "rows": 120}}
    # Staged where the converter stages: DATA_ROOT/runs/<run>/<step>/<digest>/<output>.parquet
    staged_at = Path(result["uri"])
    assert staged_at.parent.parent == Path(common_env["data_root"]) / "runs/transform-tests/tx"
    assert result["files"][0]["uri"] == result["uri"]
    assert result["files"][0]["rows"] == len(expected)
    rows = sorted(merged_rows(merged.json()), key=lambda r: r["customer"])
    assert [(r["customer"], r["orders"], r["total"]) for r in rows] == [
        (name, len(amounts), round(sum(amounts), 2)) for name, amounts in sorted(expected.items())
    ]


async def test_inputs_by_name_join_and_a_retry_replays_the_staged_file(
    common_env: dict, transformer: httpx.AsyncClient
) -> None:
    orders = staged(
        common_env, "orders.parquet", pa.table({"id": [1, 2, 3], "cust": ["a", "b", "a"]})
    )
    # Two files of one input are one view; the second lacks a column, read as null there.
    more = staged(common_env, "more.parquet", pa.table({"id": [4]}))
    segments = staged(
        common_env, "segments.parquet", pa.table({"cust": ["a", "b"], "segment": ["x", "y"]})
    )
    body = {
        "sql": "SELECT o.id, s.segment FROM orders o LEFT JOIN segments s USING (cust) "
        "ORDER BY o.id",
        "inputs": {"orders": [{"uri": orders}, more], "segments": {"files": [{"uri": segments}]}},
        "output": "joined",
    }
    first = await call(transformer, "transform", body, key="tx-join-1")
    assert first.status_code == 200, first.text
    assert pq.read_table(first.json()["uri"]).to_pylist() == [
        {"id": 1, "segment": "x"},
        {"id": 2, "segment": "y"},
        {"id": 3, "segment": "x"},
        {"id": 4, "segment": None},
    ]
    assert first.json()["uri"].endswith("/joined.parquet")
    again = await call(transformer, "transform", body, key="tx-join-1")
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
        ("SELECT * FROM read_text('/etc/passwd')", "disabled by configuration"),
        ("SELECT * FROM read_json('http://127.0.0.1:1/x.json')", "disabled by configuration"),
        ("SELECT * FROM glob('/etc/*')", "disabled by configuration"),
        # A file named as a table is not even looked up: replacement scans are off.
        ("SELECT * FROM '/etc/passwd'", "does not exist"),
    ],
)
async def test_the_sql_cannot_read_files_or_the_network(
    common_env: dict, transformer: httpx.AsyncClient, sql: str, says: str
) -> None:
    orders = staged(common_env, "o.parquet", pa.table({"id": [1]}))
    response = await call(transformer, "transform", {"sql": sql, "inputs": {"orders": orders}})
    body = refusal(response, 422, "sql")
    assert says in body["message"] and "root:" not in body["message"]


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("COPY (SELECT * FROM orders) TO '{out}'", "sql_not_a_query"),
        ("ATTACH '{out}.duckdb' AS other", "sql_not_a_query"),
        ("SET enable_external_access = true", "sql_not_a_query"),
        ("INSTALL httpfs", "sql_not_a_query"),
        ("CREATE TABLE t AS SELECT 1", "sql_not_a_query"),
        ("SELECT 1; COPY (SELECT 1) TO '{out}'", "sql_not_a_query"),
        # A query cannot reach a writing function either: the access is off underneath.
        ("SELECT * FROM orders, (FROM read_blob('{out}'))", "sql_forbidden"),
    ],
)
async def test_statements_that_write_or_reconfigure_are_refused(
    common_env: dict, transformer: httpx.AsyncClient, tmp_path: Path, sql: str, code: str
) -> None:
    out = tmp_path / "leak.csv"
    orders = staged(common_env, "o.parquet", pa.table({"id": [1]}))
    response = await call(
        transformer,
        "transform",
        {"sql": sql.format(out=out), "inputs": {"orders": orders}},
    )
    assert refusal(response, 422, "sql")["error"] == code
    assert nothing_at(out, Path(f"{out}.duckdb"))


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELEC id FROM orders", "Parser Error"),
        ("SELECT nope FROM orders", "Binder Error"),
        ("SELECT * FROM customers", "Catalog Error"),  # an input the request does not name
        ("SELECT CAST('x' || id AS INTEGER) AS n FROM orders", "Conversion Error"),
        ("SELECT id, id FROM orders", "more than once"),
        ("SELECT INTERVAL 1 DAY AS gap FROM orders", "cannot be written as Parquet"),
    ],
)
async def test_a_bad_query_is_a_422_naming_sql_with_duckdbs_message(
    common_env: dict, transformer: httpx.AsyncClient, sql: str, says: str
) -> None:
    orders = staged(common_env, "o.parquet", pa.table({"id": [1, 2]}))
    response = await call(transformer, "transform", {"sql": sql, "inputs": {"orders": orders}})
    assert says in refusal(response, 422, "sql")["message"]


async def test_inputs_outside_the_staging_area_or_missing_are_refused_by_name(
    common_env: dict, transformer: httpx.AsyncClient
) -> None:
    orders = staged(common_env, "o.parquet", pa.table({"id": [1]}))
    for ref, code in [
        ("/etc/passwd", "path_not_allowed"),
        (f"{common_env['data_root']}/../escape.parquet", "path_not_allowed"),
        (str(SAMPLES / "test" / "orders_2026_11_a.csv"), "path_not_allowed"),
        (f"{common_env['data_root']}/runs/none.parquet", "input_not_found"),
    ]:
        response = await call(
            transformer,
            "transform",
            {"sql": "FROM orders", "inputs": {"orders": orders, "other": [orders, ref]}},
        )
        assert refusal(response, 422, "inputs.other[1]")["error"] == code, ref
    not_parquet = text_file(Path(common_env["data_root"]) / "runs" / "text.parquet", "id\n1\n")
    response = await call(
        transformer, "transform", {"sql": "FROM t", "inputs": {"t": str(not_parquet)}}
    )
    assert "not a readable Parquet file" in refusal(response, 422, "inputs.t")["message"]


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({}, "inputs"),
        ({"1orders": "x"}, "inputs.1orders"),
        ({"my-orders": "x"}, "inputs.my-orders"),
        ({"Orders": "x", "orders": "y"}, "inputs"),
        ({"orders": 7}, "inputs.orders"),
    ],
)
async def test_bad_input_names_are_refused_by_field(
    transformer: httpx.AsyncClient, inputs: dict[str, Any], field: str
) -> None:
    response = await call(transformer, "transform", {"sql": "SELECT 1", "inputs": inputs})
    assert response.status_code == 422, response.text
    fields = [d["field"] for d in response.json()["details"]]
    assert any(f.startswith(field) for f in fields), fields


async def test_limits_name_sql_and_publish_nothing(
    common_env: dict, transformer: httpx.AsyncClient
) -> None:
    orders = staged(common_env, "o.parquet", pa.table({"id": list(range(10))}))
    too_long = "SELECT id FROM orders WHERE " + " OR ".join(["id = 1"] * 400)
    response = await call(transformer, "transform", {"sql": too_long, "inputs": {"orders": orders}})
    assert refusal(response, 422, "sql")["error"] == "sql_too_long"
    # Ten rows times 101: over the test's AGENT_TRANSFORM_MAX_ROWS of 1000.
    response = await call(
        transformer,
        "transform",
        {"sql": "SELECT * FROM orders, range(101)", "inputs": {"orders": orders}},
        step="too_many",
    )
    assert refusal(response, 413, "sql")["error"] == "too_many_rows"
    assert nothing_at(Path(common_env["data_root"]) / "runs" / "transform-tests" / "too_many")


async def test_a_query_past_its_time_is_interrupted(common_env: dict) -> None:
    settings = TransformerSettings(**common_env, transform_timeout_s=0.5)
    orders = staged(common_env, "o.parquet", pa.table({"id": [1]}))
    async with asgi_client(create_transformer(settings)) as client:
        response = await call(
            client,
            "transform",
            {"sql": "SELECT count(*) FROM range(10000000000)", "inputs": {"orders": orders}},
        )
    assert refusal(response, 422, "sql")["error"] == "sql_timeout"


async def test_nothing_to_transform_stages_nothing_and_a_half_empty_run_is_refused(
    common_env: dict, transformer: httpx.AsyncClient
) -> None:
    empty_convert = {"files": [], "rows": 0, "rejected_rows": 0, "schema": {}}
    response = await call(
        transformer, "transform", {"sql": "FROM batch", "inputs": {"batch": empty_convert}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["files"] == [] and response.json()["rows"] == 0
    orders = staged(common_env, "o.parquet", pa.table({"id": [1]}))
    response = await call(
        transformer,
        "transform",
        {"sql": "FROM batch, orders", "inputs": {"batch": empty_convert, "orders": orders}},
    )
    assert refusal(response, 422, "inputs.batch")["error"] == "empty_input"
