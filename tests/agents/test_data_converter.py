"""data-converter over HTTP: detection, every format, schema contracts, read confinement."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import httpx
import openpyxl
import polars as pl
import pytest

from agents.base.settings import AgentSettings
from agents.data_converter.app import create_app
from tests.conftest import SAMPLES, asgi_client, service_auth

ORDERS_A = str(SAMPLES / "test" / "orders_2026_11_a.csv")
ORDERS_B = str(SAMPLES / "test" / "orders_2026_11_b.csv")
ORDERS_JSON = str(SAMPLES / "test" / "remote" / "orders_api.json")
ORDER_SCHEMA = {
    "order_id": "int64",
    "customer": "string",
    "email": "string",
    "amount": "float64",
    "created_at": "timestamp[us, UTC]",
}
ROWS: list[dict[str, Any]] = [
    {"id": 1, "name": "Ada", "score": 9.5, "at": "2026-11-01T10:00:00Z"},
    {"id": 2, "name": "Grace", "score": 7.25, "at": "2026-11-02T11:30:00Z"},
    {"id": 3, "name": "Ken", "score": None, "at": "2026-11-03T12:45:00Z"},
]


@pytest.fixture
async def client(common_env: dict, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = AgentSettings(**common_env, allowed_roots=[str(SAMPLES), str(tmp_path)])
    async with asgi_client(create_app(settings)) as client:
        yield client


async def call(
    client: httpx.AsyncClient, action: str, body: dict[str, Any], step: str = "step", **headers: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/{action}",
        json=body,
        headers={**service_auth(), "X-Run-Id": "conv-tests", "X-Step-Id": step, **headers},
    )


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",", **kw: Any) -> str:
    with path.open("w", newline="", encoding=kw.pop("encoding", "utf-8")) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter, **kw)
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


async def test_converts_the_test_workflow_inputs_from_nested_refs_and_manifests(
    client: httpx.AsyncClient,
) -> None:
    response = await call(
        client, "convert", {"files": [[ORDERS_A], {"uri": ORDERS_B, "rows": 60}]}, "csvs"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == 120 and body["rejected_rows"] == 0
    assert body["schema"] == ORDER_SCHEMA
    assert [f["source_uri"] for f in body["files"]] == [ORDERS_A, ORDERS_B]
    first = pl.read_parquet(body["files"][0]["uri"])
    assert first["order_id"].to_list() == list(range(1, 61))
    source = pl.read_csv(ORDERS_A)
    assert first["email"].to_list() == source["email"].to_list()
    assert first["created_at"][0] == datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    manifest = body["files"][0]
    assert manifest["bytes"] == len(Path(manifest["uri"]).read_bytes())  # noqa: ASYNC240
    assert len(manifest["sha256"]) == 64

    json_response = await call(client, "convert", {"files": ORDERS_JSON}, "json")
    assert json_response.status_code == 200, json_response.text
    converted = json_response.json()
    assert converted["rows"] == 30 and converted["schema"] == ORDER_SCHEMA
    assert converted["files"][0]["source_format"] == "json"


async def test_a_retry_writes_to_the_same_place_and_a_repeated_key_replays(
    client: httpx.AsyncClient,
) -> None:
    first = await call(
        client, "convert", {"files": [ORDERS_A]}, "retry", **{"Idempotency-Key": "k-1"}
    )
    again = await call(
        client, "convert", {"files": [ORDERS_A]}, "retry", **{"Idempotency-Key": "k-1"}
    )
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    other = await call(
        client, "convert", {"files": [ORDERS_A]}, "retry", **{"Idempotency-Key": "k-2"}
    )
    assert other.json()["files"][0]["sha256"] == first.json()["files"][0]["sha256"]


@pytest.mark.parametrize(
    ("name", "write", "fmt", "dialect"),
    [
        ("semi.csv", lambda p: write_csv(p, ROWS, ";"), "csv", {"delimiter": ";", "header": True}),
        (
            "data.tsv",
            lambda p: write_csv(p, ROWS, "\t"),
            "tsv",
            {"delimiter": "\t", "header": True},
        ),
        ("rows.json", lambda p: p.write_text(json.dumps(ROWS)) and str(p), "json", None),
        (
            "rows.ndjson",
            lambda p: p.write_text("\n".join(json.dumps(r) for r in ROWS)) and str(p),
            "ndjson",
            None,
        ),
        ("rows.xml", lambda p: _write_xml(p), "xml", None),
        ("rows.avro", lambda p: _write_avro(p), "avro", None),
        ("rows.xlsx", lambda p: _write_excel(p), "excel", None),
        ("rows.parquet", lambda p: pl.DataFrame(ROWS).write_parquet(p) or str(p), "parquet", None),
    ],
)
async def test_detects_and_converts_every_format(
    client: httpx.AsyncClient, tmp_path: Path, name: str, write: Any, fmt: str, dialect: Any
) -> None:
    # A misleading extension: detection must look at the content.
    path = tmp_path / (name + ".dat")
    write(path)
    detected = await call(client, "detect", {"file": {"uri": str(path)}})
    assert detected.status_code == 200, detected.text
    assert detected.json()["format"] == fmt
    if dialect:
        assert {k: detected.json()["dialect"][k] for k in dialect} == dialect

    converted = await call(client, "convert", {"files": [str(path)]}, f"fmt-{fmt}")
    assert converted.status_code == 200, converted.text
    manifest = converted.json()["files"][0]
    assert manifest["rows"] == 3 and manifest["source_format"] == fmt
    frame = pl.read_parquet(manifest["uri"])
    assert frame["name"].to_list() == ["Ada", "Grace", "Ken"]
    assert frame["id"].cast(pl.Int64).to_list() == [1, 2, 3]
    assert frame["score"].to_list() == [9.5, 7.25, None]
    # Text formats get typed columns from inference; typed formats keep theirs.
    assert manifest["schema"]["id"] == "int64"
    assert manifest["schema"]["at"].startswith("timestamp[")


def _write_xml(path: Path) -> str:
    items = "".join(
        f'<order id="{r["id"]}"><name>{r["name"]}</name>'
        f"<score>{'' if r['score'] is None else r['score']}</score><at>{r['at']}</at></order>"
        for r in ROWS
    )
    path.write_text(f'<?xml version="1.0"?><orders>{items}</orders>')
    return str(path)


def _write_avro(path: Path) -> str:
    schema = {
        "type": "record",
        "name": "Row",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": "string"},
            {"name": "score", "type": ["null", "double"]},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        ],
    }
    records = [{**r, "at": datetime.fromisoformat(r["at"])} for r in ROWS]
    with path.open("wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema), records)
    return str(path)


def _write_excel(path: Path) -> str:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(ROWS[0]))
    for r in ROWS:
        sheet.append(
            [r["id"], r["name"], r["score"], datetime.fromisoformat(r["at"]).replace(tzinfo=None)]
        )
    workbook.save(path)
    return str(path)


async def test_a_value_beyond_the_sample_keeps_its_column_as_text(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    rows = [
        {"n": i, "when": f"2026-01-01T00:00:{i % 60:02d}Z", "code": str(i)} for i in range(12_000)
    ]
    rows[-1] = {"n": "not a number", "when": "yesterday", "code": "x"}
    path = write_csv(tmp_path / "late.csv", rows)
    response = await call(client, "convert", {"files": [path]}, "late")
    assert response.status_code == 200, response.text
    manifest = response.json()["files"][0]
    assert manifest["rows"] == 12_000
    assert manifest["schema"]["when"] == "string"
    assert manifest["schema"]["n"] == "string"  # polars re-infers from the whole file
    assert manifest["coercion_failures"]["when"]["count"] == 1
    assert "when" in manifest["schema_changes"]["kept_original_type"]
    frame = pl.read_parquet(manifest["uri"])
    assert frame["when"][-1] == "yesterday"


async def test_non_utf8_text_is_transcoded(client: httpx.AsyncClient, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "latin.csv",
        [{"city": "Zürich", "n": 1}, {"city": "Málaga", "n": 2}],
        encoding="cp1252",
    )
    detected = (await call(client, "detect", {"file": path})).json()
    assert detected["encoding"] == "cp1252"
    response = await call(client, "convert", {"files": [path]}, "latin")
    assert response.status_code == 200, response.text
    assert pl.read_parquet(response.json()["files"][0]["uri"])["city"].to_list() == [
        "Zürich",
        "Málaga",
    ]


CONTRACT_ROWS = [
    {"id": "1", "amount": "10.5", "extra": ""},
    {"id": "2", "amount": "lots", "extra": "x"},
    {"id": "3", "amount": "7", "extra": ""},
]
KNOWN = {"id": "int64", "amount": "float64", "note": "string"}


@pytest.mark.parametrize(
    ("mode", "status", "rows", "amounts", "columns"),
    [
        ("evolve", 200, 3, ["10.5", "lots", "7"], ["id", "amount", "note", "extra"]),
        ("discard_value", 200, 3, [10.5, None, 7.0], ["id", "amount", "note"]),
        ("discard_row", 200, 2, [10.5, 7.0], ["id", "amount", "note"]),
        ("freeze", 422, None, None, None),
    ],
)
async def test_schema_contracts(
    client: httpx.AsyncClient,
    tmp_path: Path,
    mode: str,
    status: int,
    rows: int | None,
    amounts: list[Any] | None,
    columns: list[str] | None,
) -> None:
    path = write_csv(tmp_path / f"contract-{mode}.csv", CONTRACT_ROWS)
    body = {"files": [path], "known_schema": KNOWN, "schema_contract": mode}
    response = await call(client, "convert", body, f"contract-{mode}")
    assert response.status_code == status, response.text
    if status != 200:
        assert response.json()["error"] == "schema_contract_violation"
        assert "extra" in response.json()["message"]
        return
    result = response.json()
    manifest = result["files"][0]
    frame = pl.read_parquet(manifest["uri"])
    assert frame.columns == columns
    assert frame["amount"].to_list() == amounts
    assert manifest["rows"] == rows
    assert manifest["schema_changes"]["missing_columns"] == ["note"]
    assert frame["note"].null_count() == frame.height
    if mode == "discard_row":
        # One row has an amount that is not a number, another a value in the unknown column.
        assert manifest["rejected_rows"] == 1 and result["rejected_rows"] == 1
        assert manifest["coercion_failures"]["amount"]["action"] == "rows_discarded"
    if mode == "discard_value":
        assert manifest["coercion_failures"]["amount"]["count"] == 1
        assert manifest["schema_changes"]["discarded_values"] == {"extra": 1}
    if mode == "evolve":
        assert manifest["schema"]["amount"] == "string"
        assert manifest["schema_changes"]["new_columns"] == ["extra"]
        assert manifest["schema_changes"]["type_changes"] == {
            "amount": {"known": "float64", "written": "string"}
        }


async def test_known_schema_types_are_applied(client: httpx.AsyncClient) -> None:
    # The schema a merged dataset reports is a valid contract for the next conversion.
    known = {**ORDER_SCHEMA, "amount": "decimal(10,2)", "order_id": "int32"}
    body = {"files": [ORDERS_B], "known_schema": known, "schema_contract": "freeze"}
    response = await call(client, "convert", body, "known")
    assert response.status_code == 200, response.text
    manifest = response.json()["files"][0]
    assert manifest["schema"] == known and manifest["coercion_failures"] == {}
    frame = pl.read_parquet(manifest["uri"])
    assert str(frame["amount"][0]) == "95.26" and frame["created_at"].dtype == pl.Datetime(
        "us", "UTC"
    )


async def test_frozen_contract_refuses_values_that_do_not_fit(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "frozen.csv", [{"id": "1", "amount": "x"}])
    body = {"files": [path], "known_schema": {"id": "int64", "amount": "float64"}}
    response = await call(client, "convert", {**body, "schema_contract": "freeze"}, "frozen")
    assert response.status_code == 422
    assert response.json()["details"]["coercion_failures"]["amount"]["count"] == 1


async def test_reads_are_confined_and_bad_bodies_name_the_field(
    client: httpx.AsyncClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret.csv"
    outside.write_text("a\n1\n")
    refused = await call(client, "convert", {"files": [str(outside)]})
    assert refused.status_code == 422 and refused.json()["error"] == "path_not_allowed"
    climbing = await call(client, "convert", {"files": [f"{SAMPLES}/../pyproject.toml"]})
    assert climbing.json()["error"] == "path_not_allowed"
    remote = await call(client, "detect", {"file": "https://example.com/data.csv"})
    assert remote.json()["error"] == "unsupported_uri"
    missing = await call(client, "convert", {"files": [str(SAMPLES / "test" / "nope.csv")]})
    assert missing.json()["error"] == "input_not_found"
    bad = await call(client, "convert", {"files": [ORDERS_A], "known_schema": {"id": "complex"}})
    assert bad.status_code == 422 and "known_schema" in bad.json()["message"]
    no_files = await call(client, "convert", {})
    assert no_files.status_code == 422 and "files" in no_files.json()["message"]
