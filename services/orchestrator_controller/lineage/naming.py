"""Dataset names after OpenLineage's naming conventions, for what runs read and write.

Sources come from the rendered params of source steps (a collect's `source`, a fetch's `url`),
destinations from the merger's load records. A name never carries credentials: URLs lose their
user info, and a database or Redis given by env-var name (`url_env`) is named by that variable
where the host would be, since only the agents' environment holds the URL.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from openlineage.client.naming.dataset import GCS, S3, DatasetNaming, LocalFileSystem, Postgres
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class DatasetName:
    namespace: str
    name: str


def _of(naming: DatasetNaming) -> DatasetName:
    return DatasetName(naming.get_namespace(), naming.get_name())


def _authority(scheme: str, url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{scheme}://{host}:{parts.port}" if parts.port else f"{scheme}://{host}"


def file_dataset(url: str) -> DatasetName:
    """A file or folder: a local path (namespace `file`), s3://bucket/key, gs://bucket/key."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file", "local"):
        path = parts.path if parts.scheme in ("file", "local") else url
        return _of(LocalFileSystem(path=posixpath.normpath(path)))
    key = parts.path.lstrip("/") or "/"
    if parts.scheme in ("s3", "s3a", "s3n"):
        return _of(S3(bucket_name=parts.netloc.rpartition("@")[2], object_key=key))
    if parts.scheme in ("gs", "gcs"):
        return _of(GCS(bucket_name=parts.netloc.rpartition("@")[2], object_key=key))
    return DatasetName(_authority(parts.scheme, url), parts.path or "/")


def http_dataset(url: str) -> DatasetName:
    """An HTTP(S) resource: namespace scheme://host[:port], name the path (query left out)."""
    parts = urlsplit(url)
    return DatasetName(_authority(parts.scheme or "http", url), parts.path or "/")


def postgres_dataset(url: str, schema: str, table: str | None) -> DatasetName:
    """A PostgreSQL table: namespace postgres://host:port, name database.schema.table."""
    parsed = make_url(url)
    host, port = parsed.host or "localhost", str(parsed.port or 5432)
    database = parsed.database or "postgres"
    if table is None:  # a whole schema
        return DatasetName(f"postgres://{host}:{port}", f"{database}.{schema}")
    return _of(Postgres(host=host, port=port, database=database, schema=schema, table=table))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _source_dataset(source: Mapping[str, Any]) -> DatasetName | None:
    kind = source.get("kind")
    url, url_env = _text(source.get("url")), _text(source.get("url_env"))
    if kind == "file":
        root = url or _text(source.get("root"))
        return file_dataset(root) if root else None
    if kind == "http":
        return http_dataset(url) if url else None
    if kind == "postgres":
        schema = _text(source.get("db_schema")) or "public"
        table = _text(source.get("table"))
        if url:
            return postgres_dataset(url, schema, table)
        if url_env:
            return DatasetName("postgres", ".".join(p for p in (url_env, schema, table) if p))
        return None
    if kind == "redis_stream" and (stream := _text(source.get("stream"))):
        if url:
            parts = urlsplit(url)
            return DatasetName(_authority(parts.scheme, url), stream)
        return DatasetName("redis", f"{url_env}.{stream}" if url_env else stream)
    return None


def source_datasets(agent: str, action: str, params: Any) -> list[DatasetName]:
    """What a step reads from outside the platform, from its rendered params."""
    if not isinstance(params, Mapping):
        return []
    if agent == "data-collector" and action == "collect":
        source = params.get("source")
        found = _source_dataset(source) if isinstance(source, Mapping) else None
        return [found] if found else []
    if agent == "data-fetch-retry" and action == "fetch" and (url := _text(params.get("url"))):
        return [http_dataset(url)]
    return []


def load_dataset(
    kind: str, destination: str, result: Mapping[str, Any], *, target_database_url: str
) -> DatasetName:
    """The dataset one load record wrote to (delta, parquet, postgres or duckdb)."""
    if kind == "postgres":
        schema, _, table = destination.partition(".")
        return postgres_dataset(target_database_url, schema, table or None)
    if kind == "duckdb":
        path, _, label = destination.partition("#")
        path = _text(result.get("path")) or path
        database = posixpath.splitext(posixpath.basename(path))[0]
        return DatasetName(f"duckdb://{path}", f"{database}.{label}")
    return file_dataset(destination)  # a Delta table or a Parquet dataset: at its folder
