"""Collecting from a Redis stream through a consumer group, acknowledged only after the merge.

`collect` first re-reads this consumer's pending entries (delivered before, never acknowledged:
the run that read them failed before `ack_stream`), and reads new entries (`>`) only when none
are pending. So a crash anywhere between collect and ack re-delivers the same entries to the
next run instead of dropping them, and a merge keyed by `_stream_id` makes the repeat harmless.

Rows: each entry becomes one row `{"_stream_id": id, **fields}`, names and values decoded as
UTF-8 (bytes that are not UTF-8 become U+FFFD and are counted in `undecodable`). With
`expand_json` (the default) a field named `data` or `json` whose value is a JSON object is
replaced by the object's keys; the entry's other fields win a name clash, `data` is expanded
before `json`, and a value that is not a JSON object stays a string. `_stream_id` is always the
entry id (a field of that name is overwritten). A pending entry whose data was deleted from the
stream (XDEL, XTRIM) yields no row but is listed in `entry_ids`, so the ack clears it.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import pyarrow as pa
from pydantic import Field, field_validator, model_validator
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agents.base.actions import ActionBody, AgentError
from agents.base.completeness import Completeness
from agents.base.context import ActionContext
from agents.base.security import (
    CredentialName,
    check_host,
    credential_may_reach,
    resolve_credential,
    scrub,
)
from agents.base.settings import AgentSettings
from agents.base.storage import DataRoot
from agents.data_collector import staging

JSON_FIELDS = ("data", "json")
ENTRY_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"
_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
_ACK_BATCH = 1000


@dataclass(frozen=True)
class RedisTarget:
    """Where to connect, parsed from a redis:// or rediss:// URL."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    ssl: bool


def parse_redis_url(raw: str) -> RedisTarget:
    """Parse a redis URL; ValueError names what is wrong (never the password)."""
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss"):
        raise ValueError("only redis:// and rediss:// URLs are supported")
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise ValueError("the URL has an invalid port") from exc
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.query or parts.fragment:
        raise ValueError("options in the URL query are not accepted")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the URL path must be a database number, like /0")
    return RedisTarget(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        ssl=scheme == "rediss",
    )


class RedisStreamSource(ActionBody):
    """A Redis stream read through a consumer group; the URL by env-var name or password-free."""

    kind: Literal["redis_stream"] = Field(description="a Redis stream (consumer group)")
    url: str | None = Field(
        None,
        description="redis:// or rediss:// URL WITHOUT a password (use url_env for one with)",
    )
    url_env: CredentialName | None = Field(
        None, description="name of the environment variable holding the full Redis URL"
    )
    stream: str = Field(
        min_length=1, max_length=512, pattern=_NAME_PATTERN, description="the stream key"
    )
    group: str = Field(
        min_length=1,
        max_length=200,
        pattern=_NAME_PATTERN,
        description="consumer group; created (MKSTREAM, from id 0) when missing",
    )
    consumer: str = Field(
        "data-collector",
        min_length=1,
        max_length=200,
        pattern=_NAME_PATTERN,
        description="consumer name; keep it stable so a run picks up its predecessor's "
        "unacknowledged entries",
    )
    count: int = Field(100, ge=1, le=100_000, description="entries per collect at most")
    block_ms: int = Field(
        0,
        ge=0,
        le=60_000,
        description="when nothing is pending, wait this long for new entries (0: do not wait)",
    )
    expand_json: bool = Field(
        True, description="expand a `data`/`json` field holding a JSON object into columns"
    )
    connect_timeout_s: float = Field(10.0, gt=0, le=120, description="connection timeout")

    @field_validator("url")
    @classmethod
    def _password_free_url(cls, value: str | None) -> str | None:
        if value is not None and parse_redis_url(value).password is not None:
            raise ValueError(
                "the URL carries a password; put the URL in an environment variable and "
                "reference it with url_env"
            )
        return value

    @model_validator(mode="after")
    def _one_url(self) -> RedisStreamSource:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and url_env")
        return self


def redis_target(
    source: RedisStreamSource, settings: AgentSettings
) -> tuple[RedisTarget, list[str]]:
    """The connection target of `source` and the secrets to scrub from messages."""
    if source.url_env:
        try:
            target = parse_redis_url(resolve_credential(source.url_env, settings))
        except ValueError as exc:
            raise AgentError(f"{source.url_env}: {exc}", code="invalid_source") from exc
        credential_may_reach(source.url_env, settings, target.host, target.port)
    else:
        assert source.url is not None
        target = parse_redis_url(source.url)
    return target, [target.password] if target.password else []


@asynccontextmanager
async def stream_client(
    source: RedisStreamSource, settings: AgentSettings
) -> AsyncIterator[tuple[Redis, list[str]]]:
    """A short-lived client on a Redis whose host passed the SSRF policy; errors mapped."""
    target, secrets = redis_target(source, settings)
    await check_host(target.host, target.port, settings)
    client = Redis(
        host=target.host,
        port=target.port,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        socket_connect_timeout=source.connect_timeout_s,
        # a blocking read must not trip the socket timeout
        socket_timeout=source.connect_timeout_s + source.block_ms / 1000,
        # no hidden retries: the engine retries the step (source_unavailable is retryable)
        retry=Retry(NoBackoff(), 0),
    )
    try:
        with redis_errors_mapped(secrets):
            yield client, secrets
    finally:
        await client.aclose()


@contextmanager
def redis_errors_mapped(secrets: list[str]) -> Iterator[None]:
    """Turn redis-py exceptions into AgentErrors: unreachable is retryable, refused is not."""
    try:
        yield
    except redis_errors.AuthenticationError as exc:
        raise AgentError(
            scrub(f"redis refused the credentials: {exc}", secrets), code="source_rejected"
        ) from exc
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        raise AgentError(
            scrub(f"redis unavailable: {type(exc).__name__}: {exc}", secrets),
            code="source_unavailable",
            retryable=True,
        ) from exc
    except redis_errors.ResponseError as exc:
        raise AgentError(scrub(f"redis error: {exc}", secrets), code="source_rejected") from exc
    except redis_errors.RedisError as exc:
        raise AgentError(
            scrub(f"redis error: {type(exc).__name__}: {exc}", secrets),
            code="source_unavailable",
            retryable=True,
        ) from exc


def _text(raw: bytes | str) -> tuple[str, bool]:
    if isinstance(raw, str):
        return raw, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), True


def entry_row(
    entry_id: str, fields: dict[Any, Any], *, expand_json: bool
) -> tuple[dict[str, Any], int]:
    """One stream entry as a row (see the module docstring), and its undecodable-value count."""
    plain: dict[str, Any] = {}
    undecodable = 0
    for raw_name, raw_value in fields.items():
        name, bad_name = _text(raw_name)
        value, bad_value = _text(raw_value)
        plain[name] = value
        undecodable += bad_name + bad_value
    expanded: dict[str, Any] = {}
    if expand_json:
        for name in JSON_FIELDS:
            if name not in plain:
                continue
            try:
                parsed = json.loads(plain[name])
            except ValueError:
                continue
            if isinstance(parsed, dict):
                del plain[name]
                for key, value in parsed.items():
                    expanded.setdefault(str(key), value)
    row: dict[str, Any] = {"_stream_id": entry_id}
    row.update((k, v) for k, v in plain.items() if k != "_stream_id")
    for key, value in expanded.items():
        row.setdefault(key, value)
    return row, undecodable


async def _ensure_group(client: Redis, source: RedisStreamSource) -> None:
    try:
        await client.xgroup_create(source.stream, source.group, id="0", mkstream=True)
    except redis_errors.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def _read(
    client: Redis, source: RedisStreamSource, start: str, block: int | None = None
) -> list[tuple[Any, dict[Any, Any]]]:
    """XREADGROUP from `start`: "0" is this consumer's pending entries, ">" new ones."""
    # RESP2 reply: [[stream, [(id, {field: value}), ...]]], or None after a block timed out
    reply: Any = await client.xreadgroup(
        source.group, source.consumer, {source.stream: start}, count=source.count, block=block
    )
    entries: list[tuple[Any, dict[Any, Any]]] = []
    for _name, items in reply or []:
        entries.extend((entry_id, fields or {}) for entry_id, fields in items)
    return entries


def _write_rows(
    root: DataRoot, dest: str, rows: list[dict[str, Any]], output_format: str
) -> dict[str, Any]:
    if output_format == "ndjson":
        return staging.write_ndjson(root, dest, rows)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    # Entries need not share fields: every row gets every column so none is dropped.
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    return staging.write_parquet(root, dest, table)


async def collect_stream(
    source: RedisStreamSource, ctx: ActionContext, *, output_format: str
) -> dict[str, Any]:
    """Read pending entries (else new ones) into one file in the run dir; ids and a cursor."""
    root = DataRoot.from_setting(ctx.settings.data_root)
    out = staging.collect_dir(root, ctx)
    await asyncio.to_thread(staging.reset_dir, root, out)
    async with stream_client(source, ctx.settings) as (client, _):
        await _ensure_group(client, source)
        entries = await _read(client, source, "0")
        redelivered = bool(entries)
        if not entries:
            entries = await _read(client, source, ">", block=source.block_ms or None)
    entry_ids: list[str] = []
    rows: list[dict[str, Any]] = []
    undecodable = deleted = 0
    for raw_id, fields in entries:
        entry_id, _ = _text(raw_id)
        entry_ids.append(entry_id)
        if not fields:  # XADD needs a field, so an empty entry is one deleted while pending
            deleted += 1
            continue
        row, bad = entry_row(entry_id, fields, expand_json=source.expand_json)
        rows.append(row)
        undecodable += bad
    files: list[dict[str, Any]] = []
    if rows:
        dest = posixpath.join(out, f"entries.{output_format}")
        try:
            files.append(await asyncio.to_thread(_write_rows, root, dest, rows, output_format))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise AgentError(
                f"entries do not fit one Parquet schema ({exc}); collect as ndjson",
                code="unexpected_payload",
            ) from exc
    return {
        "kind": "redis_stream",
        "stream": source.stream,
        "group": source.group,
        "consumer": source.consumer,
        "files": files,
        "bytes": sum(f["bytes"] for f in files),
        "entry_ids": entry_ids,
        "count": len(entry_ids),
        "rows": len(rows),
        "deleted": deleted,
        "undecodable": undecodable,
        "redelivered": redelivered,
        # A full batch of `count` entries may leave more waiting for the next collect.
        **Completeness(
            read=len(entry_ids),
            outcome="complete" if len(entry_ids) < source.count else "partial",
            cap=None if len(entry_ids) < source.count else f"count={source.count}",
        ).fields(),
        "cursor": {
            "stream": source.stream,
            "group": source.group,
            "consumer": source.consumer,
            "last_id": entry_ids[-1] if entry_ids else None,
        },
    }


async def ack_stream(
    source: RedisStreamSource, entry_ids: list[str], ctx: ActionContext
) -> dict[str, Any]:
    """XACK `entry_ids` in the source's group; `acked` counts those that were still pending."""
    unique = list(dict.fromkeys(entry_ids))
    acked = 0
    if unique:
        async with stream_client(source, ctx.settings) as (client, _):
            for start in range(0, len(unique), _ACK_BATCH):
                batch = unique[start : start + _ACK_BATCH]
                acked += int(await client.xack(source.stream, source.group, *batch))
    return {
        "stream": source.stream,
        "group": source.group,
        "requested": len(unique),
        "acked": acked,
    }
