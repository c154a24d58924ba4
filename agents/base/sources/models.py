"""The source vocabulary shared by the connector and the collector: HTTP APIs, files, PostgreSQL.

A source names where data lives and how to authenticate; secrets are referenced by the name of
an environment variable (see agents/base/security.py), never carried in the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from agents.base.actions import ActionBody, AgentError
from agents.base.security import (
    CredentialName,
    HttpAuth,
    credential_may_reach,
    pinned_pg_target,
    refuse_secret_headers,
    refuse_secret_params,
    refuse_secret_query,
    resolve_credential,
)
from agents.base.settings import AgentSettings

Scalar = str | int | float | bool


class HttpSource(ActionBody):
    """An HTTP(S) endpoint, usually a JSON REST API."""

    kind: Literal["http"] = Field(description="an HTTP(S) endpoint")
    url: str = Field(description="http:// or https:// URL (no credentials inside it)")
    auth: HttpAuth | None = Field(None, description="bearer, API key or basic auth")
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra non-secret request headers"
    )
    params: dict[str, Scalar] = Field(default_factory=dict, description="extra query parameters")
    verify_tls: bool = Field(True, description="verify the server's TLS certificate")
    timeout_s: float = Field(30.0, gt=0, le=600, description="timeout of each request")

    _headers = field_validator("headers")(refuse_secret_headers)
    _params = field_validator("params")(refuse_secret_params)
    _url = field_validator("url")(refuse_secret_query)


class FileSource(ActionBody):
    """A folder (or one file) on the local disk or in an object store (any fsspec URL)."""

    kind: Literal["file"] = Field(description="files on disk or in an object store")
    url: str = Field(
        validation_alias=AliasChoices("url", "root"),
        description="folder or file: a local path or fsspec URL (s3://bucket/prefix) under "
        "AGENT_ALLOWED_ROOTS; `root` is accepted as a synonym",
    )
    glob: str = Field("*", description="pattern of the files to take, relative to `url`")


class PostgresSource(ActionBody):
    """A PostgreSQL database; the URL is given by env-var name or plainly without a password."""

    kind: Literal["postgres"] = Field(description="a PostgreSQL database")
    url: str | None = Field(
        None, description="postgresql:// URL WITHOUT a password (use url_env for one with)"
    )
    url_env: CredentialName | None = Field(
        None, description="name of the environment variable holding the full database URL"
    )
    db_schema: str | None = Field(None, description="schema to describe or read from")
    table: str | None = Field(None, description="table to read from (collect) or focus on")
    tables: list[str] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="a whole-schema source: the tables of db_schema to take (default: every "
        "table); read by the sql_database workflow, one table per collect (plan_tables)",
    )
    query: str | None = Field(
        None,
        min_length=1,
        max_length=100_000,
        description="a SELECT to collect instead of a table, read in a READ ONLY transaction; "
        ":name placeholders take their values from `params` as bound values, never as SQL text",
    )
    params: dict[str, Scalar] = Field(
        default_factory=dict, description="values of the query's :name placeholders"
    )
    connect_timeout_s: float = Field(10.0, gt=0, le=120, description="connection timeout")

    @model_validator(mode="after")
    def _table_or_query(self) -> PostgresSource:
        if self.query is not None and self.table is not None:
            raise ValueError("give source.table or source.query, not both")
        if self.params and self.query is None:
            raise ValueError("source.params are the values of source.query's placeholders")
        if self.tables is not None:
            if self.table is not None or self.query is not None:
                raise ValueError("give source.tables (a whole schema) or source.table or query")
            if len(set(self.tables)) != len(self.tables):
                raise ValueError("source.tables lists a table twice")
        return self


Source = Annotated[HttpSource | FileSource | PostgresSource, Field(discriminator="kind")]


def postgres_url(source: PostgresSource, settings: AgentSettings) -> tuple[URL, list[str]]:
    """The asyncpg SQLAlchemy URL of `source` and the secrets to scrub from messages."""
    if (source.url is None) == (source.url_env is None):
        raise AgentError("give exactly one of source.url and source.url_env", code="invalid_source")
    raw = resolve_credential(source.url_env, settings) if source.url_env else source.url
    assert raw is not None
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        name = source.url_env or "source.url"
        raise AgentError(f"{name} is not a database URL", code="invalid_source") from exc
    if source.url is not None and url.password:
        raise AgentError(
            "source.url carries a password; put the URL in an environment variable and "
            "reference it with url_env",
            code="inline_secret",
        )
    if url.get_backend_name() != "postgresql":
        raise AgentError("only postgresql:// URLs are supported", code="invalid_source")
    if "host" in url.query:
        raise AgentError("socket hosts in the URL query are not accepted", code="invalid_source")
    if source.url_env:
        credential_may_reach(source.url_env, settings, url.host or "localhost", url.port or 5432)
    secrets = [url.password] if url.password else []
    return url.set(drivername="postgresql+asyncpg"), [str(s) for s in secrets]


@asynccontextmanager
async def postgres_engine(
    source: PostgresSource, settings: AgentSettings
) -> AsyncIterator[tuple[AsyncEngine, list[str]]]:
    """A short-lived engine on a source database whose host passed the SSRF policy.

    Every connection goes to the address the check passed (connect_args override the URL's
    host), so a name that resolves elsewhere later (DNS rebinding) reaches nothing new.
    """
    url, secrets = postgres_url(source, settings)
    ssl_mode = url.query.get("ssl")
    target = await pinned_pg_target(
        url.host or "localhost",
        url.port or 5432,
        settings,
        sslmode=ssl_mode if isinstance(ssl_mode, str) else None,
    )
    connect_args: dict[str, Any] = {"timeout": source.connect_timeout_s, **target.connect_args()}
    engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        yield engine, secrets
    finally:
        await engine.dispose()


def display_url(url: URL) -> str:
    """A database URL fit for output: the password hidden."""
    return url.render_as_string(hide_password=True)
