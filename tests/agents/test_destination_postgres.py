"""The data-merger's PostgreSQL destination against the real local server, in a private schema.

Each load runs as the merge action runs it: inside `dataset.locked` (one transaction holding
the table's advisory lock), which commits on success and rolls back on any exception.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agents.base.actions import AgentError
from agents.data_merger import dataset
from agents.data_merger.contracts import SchemaContract
from agents.data_merger.destinations import LoadRequest, postgres
from agents.data_merger.merging import IS_CURRENT, VALID_FROM, VALID_TO, MergeSpec
from shared.db.session import asyncpg_dsn
from tests.conftest import DATABASE_URL

T1 = datetime(2025, 1, 1, tzinfo=UTC)
T2 = datetime(2025, 2, 1, tzinfo=UTC)
T3 = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(DATABASE_URL)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def schema(engine: AsyncEngine) -> AsyncIterator[str]:
    name = f"t_pgdest_{uuid.uuid4().hex[:8]}"
    yield name
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


def request(
    batch: pl.DataFrame,
    *,
    disposition: str = "merge",
    key: tuple[str, ...] = ("id",),
    strategy: str = "upsert",
    retire_absent: bool = True,
    deletes: pl.DataFrame | None = None,
    contract: SchemaContract | None = None,
    fingerprint: str | None = None,
    loaded_at: datetime = T1,
) -> LoadRequest:
    spec = MergeSpec(
        disposition,  # type: ignore[arg-type]
        list(key),
        None,
        False,
        None,
        strategy,  # type: ignore[arg-type]
        retire_absent,
    )
    return LoadRequest(
        dataset="d",
        batch=batch.lazy(),
        deletes=None if deletes is None else deletes.lazy(),
        spec=spec,
        fingerprint=fingerprint or uuid.uuid4().hex,
        contract=contract or SchemaContract(),
        loaded_at=loaded_at,
    )


async def load(engine: AsyncEngine, schema: str, table: str, req: LoadRequest) -> dict[str, Any]:
    async with dataset.locked(engine, f"table:{schema}.{table}") as conn:
        return await postgres.load(conn, req, table=table, schema=schema)


async def select(engine: AsyncEngine, sql: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql))]


async def table_rows(engine: AsyncEngine, schema: str, table: str, order: str = "id") -> list:
    return await select(engine, f'SELECT * FROM "{schema}"."{table}" ORDER BY {order}')


async def ledger(engine: AsyncEngine, schema: str, table: str) -> list[dict[str, Any]]:
    return await select(
        engine,
        f'SELECT fingerprint, strategy, result FROM "{schema}"._merger_loads '
        f"WHERE target = '{schema}.{table}' ORDER BY loaded_at",
    )


async def column_types(engine: AsyncEngine, schema: str, table: str) -> dict[str, str]:
    found = await select(
        engine,
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' AND table_name = '{table}'",
    )
    return {r["column_name"]: r["data_type"] for r in found}


def counts(result: dict[str, Any]) -> tuple[int, ...]:
    keys = ("inserted", "updated", "unchanged", "deleted", "written", "rows", "version")
    return tuple(result[k] for k in keys)


async def test_append_and_replace_count_rows_and_versions(engine: AsyncEngine, schema: str) -> None:
    first = pl.DataFrame({"id": [1, 2, 3], "v": ["a", "b", "c"]})
    result = await load(engine, schema, "events", request(first, disposition="append", key=()))
    assert counts(result) == (3, 0, 0, 0, 3, 3, 1)
    assert result["target"] == "postgres" and result["table"] == f"{schema}.events"
    assert result["strategy"] == "upsert" and result["write_disposition"] == "append"
    assert "checksum" not in result and result["replayed"] is False

    # Int32 values into the bigint column: the contract casts them. The text column is now
    # varchar(3), which a binary COPY cannot fill: the rows go through a temporary table,
    # and PostgreSQL checks their length.
    async with engine.begin() as conn:
        await conn.execute(text(f'ALTER TABLE "{schema}".events ALTER COLUMN v TYPE varchar(3)'))
    more = pl.DataFrame({"id": pl.Series([4, 5], dtype=pl.Int32), "v": ["d", "eee"]})
    result = await load(engine, schema, "events", request(more, disposition="append", key=()))
    assert counts(result) == (2, 0, 0, 0, 2, 5, 2)
    too_long = pl.DataFrame({"id": [6], "v": ["ffff"]})
    with pytest.raises(Exception, match="too long"):
        await load(engine, schema, "events", request(too_long, disposition="append", key=()))
    assert len(await table_rows(engine, schema, "events")) == 5

    replacement = pl.DataFrame({"id": [9], "v": ["z"]})
    result = await load(engine, schema, "events", request(replacement, disposition="replace"))
    assert counts(result) == (1, 0, 0, 5, 6, 1, 3)
    assert await table_rows(engine, schema, "events") == [{"id": 9, "v": "z"}]
    assert [r["strategy"] for r in await ledger(engine, schema, "events")] == ["upsert"] * 3


async def test_upsert_counts_replay_and_hard_delete(engine: AsyncEngine, schema: str) -> None:
    first = pl.DataFrame({"id": [1, 2, 3], "v": ["a", "b", "c"], "n": [1.0, 2.0, 3.0]})
    assert counts(await load(engine, schema, "orders", request(first))) == (3, 0, 0, 0, 3, 3, 1)

    second = pl.DataFrame({"id": [1, 2, 4], "v": ["a", "B", "d"], "n": [1.0, 2.0, 4.0]})
    req = request(second, deletes=pl.DataFrame({"id": [3]}), fingerprint="second")
    result = await load(engine, schema, "orders", req)
    # 4 is new, 2 changed, 1 is as it was, 3 deleted: rows = 3 + 1 - 1.
    assert counts(result) == (1, 1, 1, 1, 3, 3, 2)
    expected = [
        {"id": 1, "v": "a", "n": 1.0},
        {"id": 2, "v": "B", "n": 2.0},
        {"id": 4, "v": "d", "n": 4.0},
    ]
    assert await table_rows(engine, schema, "orders") == expected

    # The same batch again is answered from the ledger, not applied.
    replayed = await load(engine, schema, "orders", req)
    assert replayed == {**result, "replayed": True}
    assert len(await ledger(engine, schema, "orders")) == 2

    # Another batch with nothing new writes nothing and keeps the version.
    same = await load(engine, schema, "orders", request(second))
    assert counts(same) == (0, 0, 3, 0, 0, 3, 2)
    assert await table_rows(engine, schema, "orders") == expected
    count = await select(engine, f'SELECT count(*) AS n FROM "{schema}".orders')
    assert count[0]["n"] == 3


async def test_scd2_versions_changes_retires_absent_keys_and_closes_deletes(
    engine: AsyncEngine, schema: str
) -> None:
    first = pl.DataFrame({"id": [1, 2, 3], "v": ["a", "b", "c"]})
    result = await load(engine, schema, "people", request(first, strategy="scd2", loaded_at=T1))
    assert counts(result) == (3, 0, 0, 0, 3, 3, 1)

    # 1 changed, 2 unchanged, 3 absent (retired), 4 new.
    second = pl.DataFrame({"id": [1, 2, 4], "v": ["A", "b", "d"]})
    result = await load(engine, schema, "people", request(second, strategy="scd2", loaded_at=T2))
    assert counts(result) == (1, 1, 1, 1, 4, 5, 2)
    assert result["strategy"] == "scd2"

    # retire_absent false: 1 and 4 stay current although absent; 2's hard delete closes it.
    third = pl.DataFrame({"id": [5], "v": ["e"]})
    req = request(
        third,
        strategy="scd2",
        retire_absent=False,
        deletes=pl.DataFrame({"id": [2]}),
        loaded_at=T3,
    )
    assert counts(await load(engine, schema, "people", req)) == (1, 0, 0, 1, 2, 6, 3)

    rows = await table_rows(engine, schema, "people", order=f"id, {VALID_FROM}")
    versions = [(r["id"], r["v"], r[VALID_FROM], r[VALID_TO], r[IS_CURRENT]) for r in rows]
    assert versions == [
        (1, "a", T1, T2, False),
        (1, "A", T2, None, True),
        (2, "b", T1, T3, False),
        (3, "c", T1, T2, False),
        (4, "d", T2, None, True),
        (5, "e", T3, None, True),
    ]
    # One current version per key is enforced by the table itself.
    with pytest.raises(Exception, match="unique"):
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    f'INSERT INTO "{schema}".people (id, v, {VALID_FROM}, {IS_CURRENT}) '
                    "VALUES (1, 'x', now(), true)"
                )
            )
    # An upsert or an append into an scd2 table is refused, as is an scd2 merge into another.
    with pytest.raises(AgentError) as refused:
        await load(engine, schema, "people", request(third))
    assert refused.value.code == "strategy_mismatch"
    with pytest.raises(AgentError) as refused:
        await load(engine, schema, "orders", request(third, strategy="scd2"))
    assert refused.value.code == "strategy_mismatch"


async def test_scd2_new_version_keeps_columns_the_batch_lacks(
    engine: AsyncEngine, schema: str
) -> None:
    first = pl.DataFrame({"id": [1], "v": ["a"], "note": ["kept"]})
    await load(engine, schema, "notes", request(first, strategy="scd2", loaded_at=T1))
    second = pl.DataFrame({"id": [1], "v": ["b"]})
    await load(engine, schema, "notes", request(second, strategy="scd2", loaded_at=T2))
    rows = await table_rows(engine, schema, "notes", order=VALID_FROM)
    assert [(r["v"], r["note"], r[IS_CURRENT]) for r in rows] == [
        ("a", "kept", False),
        ("b", "kept", True),
    ]


async def test_schema_evolves_and_a_frozen_contract_names_the_column(
    engine: AsyncEngine, schema: str
) -> None:
    first = pl.DataFrame({"id": [1, 2], "v": ["a", "b"]})
    await load(engine, schema, "evolving", request(first))

    # A new column is added (nullable); a column of nulls only adds the column: a new version.
    added = pl.DataFrame({"id": [1, 2], "v": ["a", "b"], "extra": [None, None]})
    result = await load(engine, schema, "evolving", request(added))
    assert counts(result) == (0, 0, 2, 0, 0, 2, 2)
    grown = pl.DataFrame({"id": [3], "v": ["c"], "score": [0.5]})
    assert counts(await load(engine, schema, "evolving", request(grown)))[:2] == (1, 0)
    assert await column_types(engine, schema, "evolving") == {
        "id": "bigint",
        "v": "text",
        "extra": "text",
        "score": "double precision",
    }
    rows = await table_rows(engine, schema, "evolving")
    assert [r["score"] for r in rows] == [None, None, 0.5]

    frozen = pl.DataFrame({"id": [4], "v": ["d"], "surprise": [7]})
    with pytest.raises(AgentError) as refused:
        await load(
            engine,
            schema,
            "evolving",
            request(frozen, contract=SchemaContract.model_validate("freeze")),
        )
    assert refused.value.code == "schema_contract_violation"
    assert refused.value.details["column"] == "surprise"
    assert "surprise" not in await column_types(engine, schema, "evolving")
    assert len(await table_rows(engine, schema, "evolving")) == 3

    # A value that does not convert to the column's type is the contract's refusal too.
    lossy = pl.DataFrame({"id": [1.5], "v": ["x"]})
    with pytest.raises(AgentError) as refused:
        await load(engine, schema, "evolving", request(lossy))
    assert refused.value.code == "schema_contract_violation"
    assert refused.value.details["column"] == "id"


async def test_a_type_the_column_cannot_take_is_refused(engine: AsyncEngine, schema: str) -> None:
    first = pl.DataFrame({"id": [1], "tags": [["a"]], "n": [1]})
    await load(engine, schema, "typed", request(first))
    async with engine.begin() as conn:
        await conn.execute(text(f'ALTER TABLE "{schema}".typed ADD COLUMN ref uuid'))

    attempts = [
        ("tags", pl.DataFrame({"id": [1], "tags": ["a"]}), "jsonb"),
        ("n", pl.DataFrame({"id": [1], "n": [[1, 2]]}), "bigint"),
        ("ref", pl.DataFrame({"id": [1], "ref": [str(uuid.uuid4())]}), "uuid"),
    ]
    for column, batch, table_type in attempts:
        with pytest.raises(AgentError) as refused:
            await load(engine, schema, "typed", request(batch))
        assert refused.value.code == "schema_type_change"
        assert refused.value.details["column"] == column
        assert refused.value.details["table_type"] == table_type
        assert column in refused.value.message and table_type in refused.value.message
    rows = await table_rows(engine, schema, "typed")
    assert [(r["tags"], r["n"], r["ref"]) for r in rows] == [(["a"], 1, None)]
    assert len(await ledger(engine, schema, "typed")) == 1


async def test_a_failure_mid_load_leaves_table_and_ledger_unchanged(
    engine: AsyncEngine, schema: str
) -> None:
    first = pl.DataFrame({"id": [1, 2], "v": ["a", "b"]})
    await load(engine, schema, "atomic", request(first))
    before = await table_rows(engine, schema, "atomic"), await ledger(engine, schema, "atomic")

    # A null key reaches the table from the temporary one: the INSERT fails after the COPY.
    nulls = pl.DataFrame({"id": [3, None], "v": ["c", "d"], "w": [1, 2]})
    with pytest.raises(Exception, match="null value"):
        await load(engine, schema, "atomic", request(nulls))
    # A null key COPYed straight into the table: the COPY itself is refused.
    with pytest.raises(AgentError) as refused:
        await load(engine, schema, "atomic", request(nulls.drop("w"), disposition="append"))
    assert refused.value.code == "load_failed"
    assert (await table_rows(engine, schema, "atomic"), await ledger(engine, schema, "atomic")) == (
        before
    )
    assert "w" not in await column_types(engine, schema, "atomic")

    # A new table: COPYed, then its primary key fails on duplicate keys; nothing remains.
    duplicates = pl.DataFrame({"id": [1, 1], "v": ["a", "b"]})
    with pytest.raises(Exception, match="could not create unique index"):
        await load(engine, schema, "never", request(duplicates))
    assert await column_types(engine, schema, "never") == {}
    assert await ledger(engine, schema, "never") == []


async def test_nested_values_go_to_jsonb(engine: AsyncEngine, schema: str) -> None:
    batch = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "tags": [["a", 'q"uote'], [], None],
            "point": [{"x": 1, "y": None}, None, {"x": 3, "y": 4.5}],
            "matrix": [[[1, 2], [3]], [[]], None],
            "blob": [{"b": b"\x01"}, None, {"b": None}],  # bytes, which polars cannot JSON
        }
    )
    await load(engine, schema, "nested", request(batch))
    types = await column_types(engine, schema, "nested")
    assert [types[c] for c in ("tags", "point", "matrix", "blob")] == ["jsonb"] * 4
    found = await select(
        engine,
        f"SELECT tags::text AS tags, point::text AS point, matrix::text AS matrix, "
        f'blob::text AS blob FROM "{schema}".nested ORDER BY id',
    )
    decoded = [{k: None if v is None else json.loads(v) for k, v in r.items()} for r in found]
    expected = [{k: v for k, v in row.items() if k != "id"} for row in batch.to_dicts()]
    expected[0]["blob"] = {"b": "b'\\x01'"}
    assert decoded == expected
    changed = batch.with_columns(pl.Series("tags", [["a", 'q"uote'], ["new"], None]))
    assert counts(await load(engine, schema, "nested", request(changed)))[:3] == (0, 1, 2)


async def test_timestamps_with_and_without_time_zone(engine: AsyncEngine, schema: str) -> None:
    instants = [datetime(2024, 3, 31, 1, 30), datetime(1999, 12, 31, 23, 59, 59, 999999)]
    batch = pl.DataFrame({"id": [1, 2], "local": instants}).with_columns(
        at=pl.col("local").dt.replace_time_zone("Europe/Paris"),
        fine=pl.col("local").dt.cast_time_unit("ns") + pl.duration(nanoseconds=123),
    )
    await load(engine, schema, "times", request(batch))
    types = await column_types(engine, schema, "times")
    assert types["at"] == "timestamp with time zone"
    assert types["local"] == types["fine"] == "timestamp without time zone"
    rows = await table_rows(engine, schema, "times")
    paris = batch["at"].to_list()
    assert [r["at"] for r in rows] == paris  # the same instants
    assert [r["at"].tzinfo for r in rows] == [UTC, UTC]
    assert [r["local"] for r in rows] == [r["fine"] for r in rows] == instants

    # The same instants in another zone (and nanoseconds PostgreSQL cannot hold) are unchanged.
    again = batch.with_columns(pl.col("at").dt.convert_time_zone("America/New_York"))
    assert counts(await load(engine, schema, "times", request(again)))[:3] == (0, 0, 2)


def _fast_path_frame(n: int) -> pl.DataFrame:
    ids = pl.int_range(0, n, eager=True).alias("id")
    frame = pl.DataFrame(ids).with_columns(
        name=pl.when(pl.col("id") % 7 == 0)
        .then(None)
        .otherwise(pl.format('ünï-{}\t"q"\\\n✓', pl.col("id"))),
        amount=pl.col("id").cast(pl.Float64) / 3 - 1e5,
        at=pl.when(pl.col("id") % 11 == 0)
        .then(None)
        .otherwise(
            pl.lit(datetime(1970, 1, 1, tzinfo=UTC))
            + pl.duration(microseconds=pl.col("id") * 7_777_777_777)
        ),
        flag=pl.when(pl.col("id") % 5 == 0).then(None).otherwise(pl.col("id") % 2 == 0),
        day=pl.lit(date(1900, 1, 1)) + pl.duration(days=pl.col("id") % 80_000),
        small=(pl.col("id") % 30_000 - 15_000).cast(pl.Int16),
        raw=pl.format("{}", pl.col("id")).cast(pl.Binary),
        price=(pl.col("id").cast(pl.Decimal(12, 2)) / 7).cast(pl.Decimal(12, 2)),
        clock=((pl.col("id") * 431_999) % 86_400_000_000 * 1000).cast(pl.Time),  # ns, whole us
        wait=pl.duration(microseconds=pl.col("id") * 123_456_789),
    )
    specials = [float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, 1.7976931348623157e308]
    amounts = frame["amount"].scatter(list(range(len(specials))), specials)
    return frame.with_columns(amounts)


async def test_200000_rows_through_the_fast_path_come_back_bit_for_bit(
    engine: AsyncEngine, schema: str
) -> None:
    expected = _fast_path_frame(200_000)
    result = await load(engine, schema, "bulk", request(expected))
    assert counts(result) == (200_000, 0, 0, 0, 200_000, 200_000, 1)

    def read() -> pl.DataFrame:
        with adbc.connect(asyncpg_dsn(DATABASE_URL)) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT id, name, amount, at, flag, day, small, raw, price::text AS price, "
                "clock, (extract(epoch FROM wait) * 1000000)::bigint AS wait "
                f'FROM "{schema}".bulk ORDER BY id'
            )
            return pl.from_arrow(cursor.fetch_arrow_table())  # type: ignore[return-value]

    got = await asyncio.to_thread(read)
    assert await column_types(engine, schema, "bulk") == {
        "id": "bigint",
        "name": "text",
        "amount": "double precision",
        "at": "timestamp with time zone",
        "flag": "boolean",
        "day": "date",
        "small": "smallint",
        "raw": "bytea",
        "price": "numeric",
        "clock": "time without time zone",
        "wait": "interval",
    }
    comparable = expected.with_columns(
        pl.col("price").cast(pl.String),
        pl.col("wait").dt.total_microseconds(),
    )
    assert_frame_equal(got, comparable, check_exact=True)
    # Floats bit for bit: NaN, infinities, -0.0 and subnormals included.
    assert np.array_equal(
        got["amount"].to_numpy().view(np.uint64), expected["amount"].to_numpy().view(np.uint64)
    )


async def test_unsigned_decimals_and_the_ledger_table_name(
    engine: AsyncEngine, schema: str
) -> None:
    batch = pl.DataFrame(
        {
            "id": pl.Series([1, 2], dtype=pl.UInt64),
            "big": pl.Series([2**64 - 1, 0], dtype=pl.UInt64),
            "tiny": pl.Series([255, 0], dtype=pl.UInt8),
            "price": pl.Series([Decimal("12.34"), None], dtype=pl.Decimal(10, 2)),
            "kind": pl.Series(["x", "y"], dtype=pl.Categorical),
            "when": [time(23, 59, 59, 999999), None],
            "wait": [timedelta(days=3, microseconds=5), None],
        }
    )
    await load(engine, schema, "unsigned", request(batch))
    rows = await table_rows(engine, schema, "unsigned")
    assert [tuple(r.values()) for r in rows] == [
        (1, 2**64 - 1, 255, Decimal("12.34"), "x", time(23, 59, 59, 999999), timedelta(3, 0, 5)),
        (2, 0, 0, None, "y", None, None),
    ]
    # Smaller integers into the unconstrained numeric columns are assigned without loss.
    smaller = pl.DataFrame({"id": [3], "big": [7]})
    assert counts(await load(engine, schema, "unsigned", request(smaller)))[0] == 1
    with pytest.raises(AgentError) as refused:
        await load(engine, schema, postgres.LOADS_TABLE, request(batch))
    assert refused.value.code == "invalid_target"
