"""data-collector's PostgreSQL `query` source: bound placeholders, the database's own column
types, incremental reads over the query, and refusals that are 422s and change nothing."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pyarrow as pa
import pytest

from agents.base.actions import AgentError
from agents.data_collector.pg_query import bind
from tests.agents.conftest import PLAIN_DB_URL, ROWS
from tests.agents.test_data_collector_arrow import collect, collected


def query_source(schema: str, query: str, **params: object) -> dict[str, object]:
    return {"kind": "postgres", "url": PLAIN_DB_URL, "query": query, "params": params}


async def test_a_query_with_bound_params_reads_its_rows_in_the_databases_types(
    collector: httpx.AsyncClient, events: tuple[str, asyncpg.Connection]
):
    schema, conn = events
    # A colon in a string, a :: cast, a slice and a comment are not placeholders.
    sql = (
        f"SELECT e.id, e.amount, e.name, e.tags[1:1] AS head, '10:30 :x' AS label, "
        f'e.qty::bigint AS qty FROM "{schema}".events e '
        "WHERE e.id BETWEEN :low AND :high AND e.active = :active -- and :nothing\n"
        "AND e.name LIKE :prefix"
    )
    source = query_source(schema, sql, low=10, high=400, active=True, prefix="név %")
    resp = await collect(collector, {"source": source, "chunk_size": 50})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    table = collected(out)
    expected = await conn.fetch(
        f'SELECT id, amount FROM "{schema}".events WHERE id BETWEEN 10 AND 400 AND active '
        "ORDER BY id"
    )
    assert sorted(table["id"].to_pylist()) == [r["id"] for r in expected]
    assert out["rows"] == out["read"] == len(expected) and out["table"] == "query"
    # numeric(12,2) stays a decimal of its precision; the cast column is the cast's type.
    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert table.schema.field("qty").type == pa.int64()
    assert set(table["label"].to_pylist()) == {"10:30 :x"}
    by_id = {r["id"]: r["amount"] for r in expected}
    pairs = zip(table["id"].to_pylist(), table["amount"].to_pylist(), strict=True)
    assert all(by_id[i] == amount for i, amount in pairs)


async def test_a_value_is_never_sql_and_a_query_cannot_write(
    collector: httpx.AsyncClient, events: tuple[str, asyncpg.Connection]
):
    schema, conn = events
    injected = await collect(collector, {"source": query_source(
        schema, f'SELECT id FROM "{schema}".events WHERE name = :name', name="x' OR '1'='1",
    )})  # fmt: skip
    assert injected.status_code == 200, injected.text
    assert injected.json()["rows"] == 0  # the value matched nothing: it was only a value

    for sql in (
        f'WITH gone AS (DELETE FROM "{schema}".events RETURNING id) SELECT id FROM gone',
        f'UPDATE "{schema}".events SET qty = 0 RETURNING id',
        f'SELECT 1 AS one; DROP TABLE "{schema}".events',
        "SELECT FROM WHERE",
    ):
        refused = await collect(collector, {"source": query_source(schema, sql)})
        assert refused.status_code == 422, (sql, refused.text)
        assert refused.json()["error"] == "invalid_query" and not refused.json()["retryable"]
    # A function that writes runs inside the READ ONLY transaction, and is refused there.
    await conn.execute(
        f'CREATE FUNCTION "{schema}".wipe() RETURNS int LANGUAGE sql AS '
        f'$$ DELETE FROM "{schema}".events RETURNING 1 $$'
    )
    # A failure of the read itself is the source's answer, not an outage: 422, no retry.
    for sql in (f'SELECT "{schema}".wipe() AS n', "SELECT 1 / 0 AS x"):
        failed = await collect(collector, {"source": query_source(schema, sql)})
        assert failed.status_code == 422, (sql, failed.text)
        assert failed.json()["error"] == "read_refused" and not failed.json()["retryable"]
    assert "read-only transaction" in (await collect(
        collector, {"source": query_source(schema, f'SELECT "{schema}".wipe() AS n')}
    )).json()["message"]  # fmt: skip
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".events') == ROWS


async def test_placeholders_and_params_must_match_and_table_excludes_query(
    collector: httpx.AsyncClient, events: tuple[str, asyncpg.Connection]
):
    schema, _ = events
    sql = f'SELECT id FROM "{schema}".events WHERE id > :min_id'
    missing = await collect(collector, {"source": query_source(schema, sql)})
    assert missing.status_code == 422 and ":min_id" in missing.json()["message"]
    extra = await collect(collector, {"source": query_source(schema, sql, min_id=1, mni_id=2)})
    assert extra.status_code == 422 and "mni_id" in extra.json()["message"]
    both = {**query_source(schema, sql, min_id=1), "table": "events"}
    refused = await collect(collector, {"source": both})
    assert refused.status_code == 422 and "not both" in refused.text


async def test_an_incremental_query_resumes_after_its_cursor(
    collector: httpx.AsyncClient, events: tuple[str, asyncpg.Connection]
):
    schema, conn = events
    sql = f'SELECT id, updated_at, qty FROM "{schema}".events WHERE qty >= :floor'
    body = {
        "source": query_source(schema, sql, floor=0),
        "incremental": {"field": "updated_at", "key": ["id"]},
        "chunk_size": 500,
    }
    first = (await collect(collector, body)).json()
    everything = await conn.fetchval(f'SELECT count(*) FROM "{schema}".events WHERE qty >= 0')
    assert first["rows"] == everything
    await conn.execute(
        f"UPDATE \"{schema}\".events SET updated_at = now() + interval '1 day', qty = 7 "
        "WHERE id IN (3, 4)"
    )
    second = (await collect(collector, {**body, "cursor": first["cursor"]})).json()
    assert sorted(collected(second)["id"].to_pylist()) == [3, 4], second


def test_bind_keeps_strings_comments_and_slices_and_casts_by_type() -> None:
    bound = bind(
        "SELECT a[1:2], ':x' FROM t WHERE n = :n AND f > :f AND b = :b AND s = :s /* :c */",
        {"n": 5, "f": 1.5, "b": False, "s": "it's"},
    )
    assert ":x" in bound.sql and "a[1:2]" in bound.sql and "/* :c */" in bound.sql
    assert "::bigint" in bound.sql and "::double precision" in bound.sql
    assert "::boolean" in bound.sql and "::text" in bound.sql
    assert "it's" not in bound.sql and sorted(bound.settings.values()) == [
        "1.5",
        "5",
        "false",
        "it's",
    ]
    with pytest.raises(AgentError, match="no value"):
        bind("SELECT :a", {})


async def test_a_connection_killed_mid_read_is_retryable(
    collector: httpx.AsyncClient, events: tuple[str, asyncpg.Connection]
):
    _, conn = events
    sql = (
        "SELECT g AS x, CASE WHEN g = 20000 THEN pg_sleep(30)::text END AS pause "
        "FROM generate_series(1, 40000) g"
    )
    reading = asyncio.create_task(collect(collector, {"source": query_source("", sql)}))
    killed = 0
    for _ in range(200):  # until the read is under way
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE query LIKE 'COPY (SELECT%pg_sleep(30)%' AND pid <> pg_backend_pid()"
        )
        if killed:
            break
        await asyncio.sleep(0.1)
    resp = await reading
    assert killed == 1
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"] == "source_unavailable" and resp.json()["retryable"] is True
