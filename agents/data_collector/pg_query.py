"""A PostgreSQL query as a source: `:name` placeholders bound from `params`, columns described
by the database itself.

Placeholders are found with sqlglot's PostgreSQL tokenizer, so a `:name` inside a string, a
dollar-quoted body, a comment, an array slice or a `::` cast is left alone. Each one becomes
`current_setting('ingest_collector.pN')` cast to its value's type, and the value travels as
a bound parameter of `set_config`: never SQL text, and the streaming query itself has no
bind parameters (which would make the Arrow driver materialise the whole result; see
`pg_arrow`).

The columns come from a temporary view of the query, created in a savepoint that is rolled
back: PostgreSQL types every column as the reader will see it (numeric precision included),
and refuses anything that is not a single read (a view holds no INSERT/UPDATE/DELETE, not
even in a WITH). The rows are then read in a READ ONLY transaction.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

from agents.base.actions import AgentError
from agents.base.sources.postgres import Column, table_columns

ParamValue = str | int | float | bool
SETTING_PREFIX = "ingest_collector.p"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The SQL type a bound value is read back as (bool before int: a bool is an int in Python).
_CASTS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "bigint"),
    (float, "double precision"),
    (str, "text"),
)


@dataclass(frozen=True)
class BoundQuery:
    sql: str  # the query with every placeholder replaced by its setting
    settings: dict[str, str]  # session setting -> value, set with bound parameters


def _cast(value: ParamValue) -> str:
    for kind, sql_type in _CASTS:
        if isinstance(value, kind):
            return sql_type
    raise AgentError(f"params: {value!r} is not a string, number or boolean", code="invalid_query")


def _as_text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def bind(sql: str, params: dict[str, ParamValue]) -> BoundQuery:
    """Replace each `:name` of `sql` by its parameter's setting; every placeholder must have a
    parameter and every parameter a placeholder (a typo is an error, not a silent NULL)."""
    try:
        tokens = Postgres().tokenize(sql)
    except TokenError as exc:
        raise AgentError(f"source.query: cannot be read: {exc}", code="invalid_query") from exc
    if not tokens:
        raise AgentError("source.query is empty", code="invalid_query")
    found: list[tuple[int, int, str]] = []  # (start, end inclusive, name)
    depth = 0  # inside [...], `a:b` is a slice, not a placeholder
    for colon, after in zip(tokens, tokens[1:], strict=False):
        if colon.token_type == TokenType.L_BRACKET:
            depth += 1
        elif colon.token_type == TokenType.R_BRACKET:
            depth = max(0, depth - 1)
        elif (
            colon.token_type == TokenType.COLON
            and depth == 0
            and after.start == colon.end + 1
            and _NAME.match(after.text)
        ):
            found.append((colon.start, after.end, after.text))
    unknown = sorted({n for _, _, n in found} - set(params))
    if unknown:
        raise AgentError(
            f"source.query: placeholder :{unknown[0]} has no value in source.params",
            code="invalid_query",
        )
    unused = sorted(set(params) - {n for _, _, n in found})
    if unused:
        raise AgentError(
            f"source.params: {unused[0]!r} is not used by source.query (no :{unused[0]})",
            code="invalid_query",
        )
    order = sorted(params)
    settings = {f"{SETTING_PREFIX}{order.index(n)}": _as_text(params[n]) for n in order}
    pieces, last = [], 0
    for start, end, name in found:
        setting = f"{SETTING_PREFIX}{order.index(name)}"
        pieces += [sql[last:start], f"current_setting('{setting}')::{_cast(params[name])}"]
        last = end + 1
    pieces.append(sql[last:])
    return BoundQuery(sql="".join(pieces).strip().rstrip(";"), settings=settings)


async def describe(conn: AsyncConnection, query: BoundQuery) -> list[Column]:
    """The query's columns as PostgreSQL types them, from a temporary view rolled back at once.

    `exec_driver_sql` hands the text to the driver as it is: SQLAlchemy's own `:name` parsing
    would read colons in the user's strings as its parameters."""
    view = f"ingest_query_{uuid.uuid4().hex[:12]}"
    savepoint = await conn.begin_nested()
    try:
        await conn.exec_driver_sql(f"CREATE TEMPORARY VIEW {view} AS {query.sql}")
        temp_schema = (
            await conn.exec_driver_sql(
                "SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()"
            )
        ).scalar_one()
        found = await table_columns(conn, schema=temp_schema, table=view)
    except DBAPIError as exc:
        await savepoint.rollback()
        if _is_connection_error(exc):
            raise
        raise AgentError(
            f"source.query is not a query PostgreSQL can read: {_first_line(exc)}",
            code="invalid_query",
        ) from exc
    await savepoint.rollback()
    return found[(temp_schema, view)]


def _is_connection_error(exc: DBAPIError) -> bool:
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    return exc.connection_invalidated or sqlstate.startswith(("08", "57P"))


def _first_line(exc: DBAPIError) -> str:
    message = str(exc.orig) if exc.orig is not None else str(exc)
    return message.strip().splitlines()[0][:300]
