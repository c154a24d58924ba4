"""data-converter over HTTP (issue 14): types as the source has them, and bad data is a 422.

Leading zeros and long ids survive every typing mode; JSON with empty objects, mixed kinds and
deep nesting converts and merges (Parquet dataset and PostgreSQL); junk, truncated files,
ragged rows and wrong encodings are 422s that say where the file breaks.
"""

from __future__ import annotations

import io
import json
import random
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import fastavro
import httpx
import openpyxl
import polars as pl
import pytest

from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL, service_auth

# Quoted codes, and an id too long for int64 (a float would round it).
ZIPS = b'id,zip,account\n1,"08123","12345678901234567890"\n2,"00501","98765432109876543210"\n'
# csvkit's examples/mac_newlines.csv: `\r` ends lines, and one sits inside a quoted value.
MAC_NEWLINES = b'a,b,c\r1,2,3\r"Once upon\ra time",5,6\r'
RECORDS: list[dict[str, Any]] = [
    {"id": 1, "args": {}, "v": 1, "tags": [], "deep": {"a": {"b": {"c": [{"d": {}}]}}}},
    {"id": 2, "args": {}, "v": "x", "tags": [1, "two"], "deep": {"a": {"b": {"c": []}}}},
    {"id": 3, "args": {}, "v": {"k": [1]}, "tags": None, "deep": None},
]


@pytest.fixture
def converter(converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> httpx.AsyncClient:
    return converter_merger[0]


async def call(client: httpx.AsyncClient, action: str, body: dict[str, Any]) -> httpx.Response:
    step = uuid.uuid4().hex[:8]  # every call its own output folder
    headers = {**service_auth(), "X-Run-Id": "types-tests", "X-Step-Id": step}
    return await client.post(f"/api/v1/{action}", json=body, headers=headers)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


async def convert(client: httpx.AsyncClient, path: str, **options: Any) -> dict[str, Any]:
    response = await call(client, "convert", {"files": [path], **options})
    assert response.status_code == 200, response.text
    manifest: dict[str, Any] = response.json()["files"][0]
    return manifest


async def refused(client: httpx.AsyncClient, path: str, **options: Any) -> dict[str, Any]:
    response = await call(client, "convert", {"files": [path], **options})
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    assert body["retryable"] is False
    return body


@pytest.mark.parametrize(
    ("options", "id_type"),
    [
        ({}, "int64"),
        ({"infer_types": False}, "string"),
        ({"known_schema": {"zip": "string"}}, "int64"),
        (
            {"known_schema": {"zip": "string", "account": "string"}, "schema_contract": "freeze"},
            None,
        ),
    ],
    ids=["inferred", "infer_types_false", "known_schema", "frozen"],
)
async def test_quoted_codes_and_long_ids_keep_every_digit(
    converter: httpx.AsyncClient, tmp_path: Path, options: dict[str, Any], id_type: str | None
) -> None:
    path = write(tmp_path, "zips.csv", ZIPS)
    if id_type is None:  # a frozen contract refuses the undeclared id column, nothing else
        body = await refused(converter, path, **options)
        assert body["error"] == "schema_contract_violation" and "'id'" in body["message"]
        return
    manifest = await convert(converter, path, **options)
    assert manifest["schema"]["zip"] == manifest["schema"]["account"] == "string"
    assert manifest["schema"]["id"] == id_type
    frame = pl.read_parquet(manifest["uri"])
    assert frame["zip"].to_list() == ["08123", "00501"]
    assert frame["account"].to_list() == ["12345678901234567890", "98765432109876543210"]


async def test_declared_types_win_over_inference_at_read_time(
    converter: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = write(tmp_path, "codes.csv", b"code,qty\n007,1\n123,2\n")
    manifest = await convert(converter, path, known_schema={"code": "string", "qty": "int32"})
    assert manifest["schema"] == {"code": "string", "qty": "int32"}
    assert pl.read_parquet(manifest["uri"])["code"].to_list() == ["007", "123"]
    # Unquoted plain numbers declared as text stay the text they were, too.
    plain = write(tmp_path, "plain.csv", b"code\n42\n43\n")
    manifest = await convert(converter, plain, known_schema={"code": "string"})
    assert pl.read_parquet(manifest["uri"])["code"].to_list() == ["42", "43"]


@pytest.mark.parametrize("layout", ["json", "ndjson"])
async def test_empty_objects_mixed_kinds_and_deep_nesting_convert_and_merge(
    converter_merger: tuple[httpx.AsyncClient, httpx.AsyncClient],
    common_env: dict,
    tmp_path: Path,
    layout: str,
) -> None:
    converter, merger = converter_merger
    text = json.dumps(RECORDS) if layout == "json" else "\n".join(json.dumps(r) for r in RECORDS)
    manifest = await convert(converter, write(tmp_path, f"records.{layout}", text.encode()))
    schema = manifest["schema"]
    assert schema["id"] == "int64" and schema["args"] == schema["v"] == "string"
    assert schema["tags"] == "list[string]"
    assert schema["deep"] == "struct<a: struct<b: struct<c: list[struct<d: string>]>>>"
    frame = pl.read_parquet(manifest["uri"])
    assert frame["args"].to_list() == ["{}", "{}", "{}"]
    # JSON text keeps 1 and "x" apart.
    assert frame["v"].to_list() == ["1", '"x"', '{"k":[1]}']
    assert frame["tags"].to_list() == [[], ["1", '"two"'], None]
    assert frame["deep"][0] == {"a": {"b": {"c": [{"d": "{}"}]}}}

    dataset = f"ds_{uuid.uuid4().hex[:8]}"
    merged = await call(merger, "merge", {"batches": manifest, "dataset": dataset})
    assert merged.status_code == 200, merged.text
    assert merged.json()["rows"] == 3
    table = f"args_{uuid.uuid4().hex[:6]}"
    target = {"kind": "postgres", "table": table}
    loaded = await call(merger, "merge", {"batches": manifest, "dataset": table, "target": target})
    assert loaded.status_code == 200, loaded.text
    conn = await asyncpg.connect(asyncpg_dsn(DATABASE_URL))
    try:
        schema_name = common_env["target_schemas"][0]
        rows = await conn.fetch(
            f'SELECT id, args, v, deep FROM "{schema_name}"."{table}" ORDER BY id'
        )
    finally:
        await conn.close()
    assert [(r["id"], r["args"], r["v"]) for r in rows] == [
        (1, "{}", "1"),
        (2, "{}", '"x"'),
        (3, "{}", '{"k":[1]}'),
    ]
    assert json.loads(rows[0]["deep"]) == {"a": {"b": {"c": [{"d": "{}"}]}}}


async def test_json_strings_stay_strings_and_wide_integers_stay_exact(
    converter: httpx.AsyncClient, tmp_path: Path
) -> None:
    records = [{"code": "123", "at": "2026-11-01T10:00:00Z", "big": 12345678901234567890}]
    manifest = await convert(converter, write(tmp_path, "s.json", json.dumps(records).encode()))
    # A JSON string is text unless it holds what JSON cannot type (dates, timestamps).
    assert manifest["schema"]["code"] == "string"
    assert manifest["schema"]["at"].startswith("timestamp[")
    assert manifest["schema"]["big"] == "decimal(38,0)"
    assert str(pl.read_parquet(manifest["uri"])["big"][0]) == "12345678901234567890"


async def test_a_spreadsheet_column_mixing_numbers_dates_and_text_becomes_text(
    converter: httpx.AsyncClient, tmp_path: Path
) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in (["when", "n"], [5, 1], [datetime(2026, 11, 1), 2], ["soon", 3]):
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    manifest = await convert(converter, write(tmp_path, "mixed.xlsx", buffer.getvalue()))
    assert manifest["schema"] == {"when": "string", "n": "int64"}
    # Not polars' supertype, which made the date the integer 20393.
    when = pl.read_parquet(manifest["uri"])["when"].to_list()
    assert when == ["5", "2026-11-01T00:00:00", "soon"]


async def test_old_mac_line_endings_convert_with_the_right_rows(
    converter: httpx.AsyncClient, tmp_path: Path
) -> None:
    manifest = await convert(converter, write(tmp_path, "mac_newlines.csv", MAC_NEWLINES))
    assert manifest["rows"] == 2
    frame = pl.read_parquet(manifest["uri"])
    assert frame.to_dicts() == [
        {"a": "1", "b": 2, "c": 3},
        {"a": "Once upon\ra time", "b": 5, "c": 6},  # the quoted \r is part of the value
    ]


async def test_a_ragged_row_is_a_422_naming_its_line(
    converter: httpx.AsyncClient, tmp_path: Path
) -> None:
    rows = b"".join(b"%d,%d,x\n" % (i, i) for i in range(5000))
    path = write(tmp_path, "ragged.csv", b"a,b,c\n" + rows + b"1,2,3,4\n")
    body = await refused(converter, path)
    assert body["error"] == "parse_error"
    assert "ragged.csv" in body["message"] and "line 5002" in body["message"]
    assert body["details"] == {"line": 5002, "expected_fields": 3, "found": 4}
    # A short row is not ragged: its missing trailing fields are nulls.
    short = await convert(converter, write(tmp_path, "short.csv", b"a,b,c\n1,2,3\n4,5\n"))
    assert pl.read_parquet(short["uri"])["c"].to_list() == [3, None]


async def test_a_quote_left_open_is_a_422_naming_its_line(
    converter: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = write(tmp_path, "cut.csv", b'a,b\n1,2\n3,"an unfinished\n')
    body = await refused(converter, path)
    assert "cut.csv" in body["message"] and "line 3" in body["message"]
    assert "truncated" in body["message"]


async def test_a_wrong_encoding_is_a_422_naming_the_byte_or_decodes_as_told(
    converter: httpx.AsyncClient, tmp_path: Path
) -> None:
    # The head (the first 64 KiB detection reads) is ASCII; a cp1252 byte comes later.
    data = b"name,n\n" + b"abc,1\n" * 20_000 + b"Jos\xe9,2\n"
    path = write(tmp_path, "late.csv", data)
    body = await refused(converter, path)
    assert body["error"] == "bad_encoding" and "late.csv" in body["message"]
    assert body["details"] == {
        "encoding": "utf-8",
        "byte_offset": data.index(b"\xe9"),
        "line": 20_002,
    }
    manifest = await convert(converter, path, encoding="cp1252")
    assert pl.read_parquet(manifest["uri"])["name"][-1] == "José"
    ndjson = write(tmp_path, "late.ndjson", b'{"a": "x"}\n' * 20_000 + b'{"a": "Jos\xe9"}\n')
    assert (await refused(converter, ndjson))["details"]["line"] == 20_001
    unknown = await call(converter, "convert", {"files": [path], "encoding": "klingon"})
    assert unknown.status_code == 422 and "encoding" in unknown.json()["message"]


def _truncated(fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "parquet":
        pl.DataFrame({"id": range(1000)}).write_parquet(buffer)
    elif fmt == "avro":
        schema = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "long"}]}
        fastavro.writer(buffer, schema, [{"id": i} for i in range(1000)])
    else:
        buffer.write(json.dumps([{"id": i} for i in range(1000)]).encode())
    data = buffer.getvalue()
    return data[: len(data) * 2 // 3]


@pytest.mark.parametrize("fmt", ["parquet", "avro", "json"])
async def test_a_truncated_file_is_a_422(
    converter: httpx.AsyncClient, tmp_path: Path, fmt: str
) -> None:
    path = write(tmp_path, f"cut.{fmt}", _truncated(fmt))
    body = await refused(converter, path, format=fmt)
    assert body["error"] == "parse_error" and f"cut.{fmt}" in body["message"]


@pytest.mark.parametrize("fmt", ["auto", "csv", "tsv", "json", "ndjson", "parquet", "xml"])
async def test_random_bytes_are_a_422_whatever_the_caller_says_they_are(
    converter: httpx.AsyncClient, tmp_path: Path, fmt: str
) -> None:
    path = write(tmp_path, "junk.csv", random.Random(14).randbytes(2000))
    body = await refused(converter, path, format=fmt)
    assert "junk.csv" in body["message"]
