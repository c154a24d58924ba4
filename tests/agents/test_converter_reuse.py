"""data-converter over HTTP: Parquet already in its final types is published as it is (issue 14).

The inputs are written by the PostgreSQL collector's own Parquet writer
(agents.data_collector.staging.write_parquet: pyarrow, zstd). A file published as it is keeps
the input's bytes (same sha256, the writer's `created_by`), in a file of its own; anything the
conversion would change (inference, a cast, a contract, another codec) still goes through the
full conversion, written by polars.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agents.base.settings import AgentSettings
from agents.base.storage import DataRoot
from agents.data_collector.staging import write_parquet
from agents.data_converter.app import create_app
from tests.conftest import asgi_client, service_auth

PYARROW = f"parquet-cpp-arrow version {pa.__version__}"
# What the PostgreSQL collector gives for bigint, timestamptz, timestamp, text, numeric(12,2),
# integer, boolean, time, interval and text with NULLs.
TABLE = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "updated_at": pa.array(
            [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=s) for s in (1, 2, 3)],
            pa.timestamp("us", tz="UTC"),
        ),
        "created_local": pa.array(
            [datetime(2026, 1, 1, 0, m) for m in (1, 2, 3)], pa.timestamp("us")
        ),
        "name": pa.array(["name-1", "name-2", "08123"]),
        "amount": pa.array([Decimal("1.50"), Decimal("-2.25"), None], pa.decimal128(12, 2)),
        "qty": pa.array([1, 300, 7], pa.int32()),
        "active": pa.array([True, False, None]),
        "at_time": pa.array([time(1, 2, 3), None, time(23, 59)], pa.time64("us")),
        "wait": pa.array([timedelta(seconds=5), None, timedelta(days=1)], pa.duration("us")),
        "note": pa.array([None, "c4ca4238a0b923820dcc509a6f75849b", "x"]),
    }
)

FINAL = {
    "id": "int64",
    "updated_at": "timestamp[us, UTC]",
    "created_local": "timestamp[us]",
    "name": "string",
    "amount": "decimal(12,2)",
    "qty": "int32",
    "active": "bool",
    "at_time": "time",
    "wait": "duration[us]",
    "note": "string",
}


@pytest.fixture
async def client(common_env: dict, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = AgentSettings(**common_env, allowed_roots=[str(tmp_path)])
    async with asgi_client(create_app(settings)) as client:
        yield client


@pytest.fixture
def collected(tmp_path: Path) -> Path:
    """A chunk as the PostgreSQL collector stages it."""
    path = tmp_path / "chunk-00001.parquet"
    write_parquet(DataRoot.from_setting(str(tmp_path)), str(path), TABLE)
    return path


async def convert(client: httpx.AsyncClient, step: str, **body: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/convert",
        json=body,
        headers={**service_auth(), "X-Run-Id": "reuse-tests", "X-Step-Id": step},
    )


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stat(path: str | Path) -> os.stat_result:
    return Path(path).stat()


def created_by(path: str) -> str:
    return str(pq.ParquetFile(path).metadata.created_by)


async def test_collected_parquet_is_published_byte_for_byte(
    client: httpx.AsyncClient, collected: Path
) -> None:
    before = sha256(collected)
    response = await convert(client, "as-is", files=[{"uri": str(collected)}])
    assert response.status_code == 200, response.text
    manifest = response.json()["files"][0]
    out = manifest["uri"]
    # Not re-encoded: the collector's bytes, writer and codec, in a file of the output's own.
    assert created_by(out) == PYARROW
    assert manifest["sha256"] == sha256(out) == before
    assert manifest["bytes"] == stat(out).st_size == stat(collected).st_size
    assert stat(out).st_ino != stat(collected).st_ino
    assert sha256(collected) == before  # the input is left in place, untouched
    assert manifest["rows"] == 3 and manifest["rejected_rows"] == 0
    assert manifest["source_format"] == "parquet"
    assert manifest["coercion_failures"] == {}
    assert manifest["schema"] == FINAL
    assert pl.read_parquet(out).equals(pl.read_parquet(collected))

    # Replayed, the same request publishes the same bytes at the same place.
    again = await convert(client, "as-is", files=[{"uri": str(collected)}])
    assert again.json()["files"][0] == manifest
    assert sha256(out) == before


async def test_a_known_schema_the_file_already_has_keeps_it_as_is(
    client: httpx.AsyncClient, collected: Path
) -> None:
    known = {"id": "int64", "updated_at": "timestamp[us, UTC]", "created_local": "timestamp[us]"}
    response = await convert(client, "known-prefix", files=[str(collected)], known_schema=known)
    assert created_by(response.json()["files"][0]["uri"]) == PYARROW  # evolve, nothing to cast
    for contract in ("freeze", "discard_row", "discard_value"):
        # freeze refuses the columns known_schema does not name: it gets all of them.
        schema = FINAL if contract == "freeze" else known
        body = {"files": [str(collected)], "known_schema": schema, "schema_contract": contract}
        response = await convert(client, f"known-{contract}", **body)
        assert response.status_code == 200, response.text
        manifest = response.json()["files"][0]
        if contract == "freeze":
            assert created_by(manifest["uri"]) == PYARROW, contract
            assert manifest["sha256"] == sha256(collected)
        else:
            # Columns the known schema does not name are dropped: a real conversion.
            assert created_by(manifest["uri"]).startswith("Polars"), contract
            assert list(manifest["schema"]) == list(known)


async def test_a_value_that_violates_a_frozen_known_type_is_still_caught(
    client: httpx.AsyncClient, collected: Path
) -> None:
    known = {"id": "int64", "qty": "int8"}  # qty holds 300
    response = await convert(
        client,
        "freeze-violated",
        files=[str(collected)],
        known_schema=known,
        schema_contract="discard_value",
    )
    assert response.status_code == 200, response.text
    manifest = response.json()["files"][0]
    assert created_by(manifest["uri"]).startswith("Polars")
    assert pl.read_parquet(manifest["uri"])["qty"].to_list() == [1, None, 7]
    assert manifest["coercion_failures"]["qty"]["count"] == 1

    frozen = FINAL | known
    response = await convert(
        client, "freeze", files=[str(collected)], known_schema=frozen, schema_contract="freeze"
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "schema_contract_violation"
    assert "qty" in response.json()["message"]


async def test_text_that_inference_retypes_goes_through_the_full_conversion(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = tmp_path / "texts.parquet"
    table = pa.table({"id": [1, 2], "seen": ["2026-11-01T10:00:00Z", "2026-11-02T11:30:00Z"]})
    write_parquet(DataRoot.from_setting(str(tmp_path)), str(path), table)
    response = await convert(client, "inferred", files=[str(path)])
    assert response.status_code == 200, response.text
    manifest = response.json()["files"][0]
    assert created_by(manifest["uri"]).startswith("Polars")
    assert manifest["schema"] == {"id": "int64", "seen": "timestamp[us, UTC]"}

    # With inference off the same file is already final.
    response = await convert(client, "not-inferred", files=[str(path)], infer_types=False)
    manifest = response.json()["files"][0]
    assert created_by(manifest["uri"]) == PYARROW
    assert manifest["schema"] == {"id": "int64", "seen": "string"}


async def test_another_codec_is_reencoded_in_the_requested_one(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = tmp_path / "snappy.parquet"
    pq.write_table(TABLE, path, compression="snappy")
    response = await convert(client, "to-zstd", files=[str(path)])
    out = response.json()["files"][0]["uri"]
    assert created_by(out).startswith("Polars")
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"
    assert pl.read_parquet(out).equals(pl.read_parquet(path))

    response = await convert(client, "keep-snappy", files=[str(path)], compression="snappy")
    assert response.json()["files"][0]["sha256"] == sha256(path)

    response = await convert(client, "rewrite", files=[str(path)], rewrite_parquet=True)
    assert created_by(response.json()["files"][0]["uri"]).startswith("Polars")


async def test_a_corrupt_page_behind_a_valid_footer_is_a_422_naming_the_file(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = tmp_path / "corrupt.parquet"
    write_parquet(DataRoot.from_setting(str(tmp_path)), str(path), TABLE)
    column = pq.ParquetFile(path).metadata.row_group(0).column(3)  # "name"
    start = column.data_page_offset
    data = bytearray(path.read_bytes())
    # The compressed values of the first data page (past its header) overwritten.
    end = start + column.total_compressed_size
    data[end - 12 : end - 2] = b"\xff" * 10
    path.write_bytes(bytes(data))
    pq.read_metadata(path)  # the footer still reads
    response = await convert(client, "corrupt", files=[str(path)])
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "parse_error"
    assert str(path) in response.json()["message"]
    assert response.json()["retryable"] is False
