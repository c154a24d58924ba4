"""What agents may reach: an SSRF guard for URLs, confinement of file sources, credentials by name.

- Network targets (the rule is `shared/ssrf.py`, which the controller applies to registered
  agents too): link-local and cloud-metadata addresses are refused always; private,
  loopback and other non-global addresses only when `settings.allow_private_hosts` names the
  host or a CIDR holding every address it resolves to. Redirects are followed hop by hop
  through the same check, and credentials never follow a redirect to another origin.
- File sources: a path (or fsspec URL) must lie under one of `settings.allowed_roots` after
  resolving `..` and symlinks.
- Credentials: bodies carry the NAME of an environment variable, never the secret; the value
  is read here, and `scrub` keeps it out of outputs and error messages.

- The address that passed the check is the one connected to: `pinned_client` connects
  through a network backend that takes the checked address for the host (TLS still verifies
  the host's name), so a DNS answer that changes between check and connect (DNS rebinding)
  changes nothing. Allowlist entries are a host, `host:port`, a CIDR or `CIDR:port`.
  PostgreSQL sources likewise: `pinned_pg_target` resolves and checks once and asyncpg is
  given the checked address; with `ssl=verify-full` the certificate is still verified
  against the name in the URL.
"""

from __future__ import annotations

import base64
import contextvars
import ipaddress
import os
import posixpath
import re
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

import fsspec
import httpcore
import httpx
from fsspec import AbstractFileSystem
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agents.base.actions import AgentError
from agents.base.settings import AgentSettings
from shared import ssrf
from shared.ssrf import IPAddress

_REDIRECTS = {301, 302, 303, 307, 308}
_SENSITIVE = re.compile(
    r"(authorization|cookie|token|secret|passw|api[-_]?key|signature|credential|^sig$|^key$)",
    re.IGNORECASE,
)


class HostNotAllowed(AgentError):
    """A URL or host the SSRF policy refuses (never retryable)."""

    code = "host_not_allowed"


class HostUnresolvable(AgentError):
    """DNS gave no address; may be transient, so retryable."""

    code = "dns_failed"


# ---------------------------------------------------------------------------- network targets


async def check_host(host: str, port: int, settings: AgentSettings) -> list[IPAddress]:
    """Refuse `host` unless every address it resolves to may be reached; return them."""
    try:
        return await ssrf.check_target(
            host, port, settings.allow_private_hosts, setting="AGENT_ALLOW_PRIVATE_HOSTS"
        )
    except ssrf.TargetUnresolvable as exc:
        raise HostUnresolvable(str(exc), retryable=True, status_code=503) from exc
    except ssrf.TargetRefused as exc:
        raise HostNotAllowed(str(exc)) from exc


async def check_url(url: str, settings: AgentSettings) -> httpx.URL:
    """Parse an http(s) URL without inline credentials and check its host; return it."""
    checked, _ = await _check_url(url, settings)
    return checked


async def _check_url(url: str, settings: AgentSettings) -> tuple[httpx.URL, list[IPAddress]]:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise AgentError(f"invalid URL: {exc}", code="invalid_url") from exc
    if parsed.scheme not in ("http", "https"):
        raise HostNotAllowed(f"only http and https URLs are fetched, not {parsed.scheme!r}")
    if parsed.userinfo:
        raise AgentError(
            "credentials inside the URL are not accepted; reference an environment "
            "variable with auth.credential",
            code="inline_secret",
        )
    default_port = 443 if parsed.scheme == "https" else 80
    return parsed, await check_host(parsed.host, parsed.port or default_port, settings)


# (host, port) -> the address the SSRF check passed, for connections opened in this context.
_PINS: contextvars.ContextVar[dict[tuple[str, int], str] | None] = contextvars.ContextVar(
    "ssrf_pins", default=None
)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the checked address of a host instead of resolving its name again."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pins = _PINS.get() or {}
        address = pins.get((host.strip("[]").lower().rstrip("."), port), host)
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options,
        )  # fmt: skip

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx client whose connections go to the addresses `guarded_stream` checked."""
    transport = httpx.AsyncHTTPTransport(verify=kwargs.pop("verify", True))
    # httpx has no public hook for the network backend; its pool keeps it in this attribute.
    pool: Any = transport._pool
    pool._network_backend = _PinnedBackend(pool._network_backend)
    return httpx.AsyncClient(transport=transport, **kwargs)


@dataclass(frozen=True)
class PgTarget:
    """Where a PostgreSQL source connection goes: the checked address, not the name again."""

    address: str
    port: int
    host: str
    tls: ssl.SSLContext | None = None

    def connect_args(self) -> dict[str, Any]:
        """asyncpg.connect() keywords that override the URL's host, port (and TLS context)."""
        args: dict[str, Any] = {"host": self.address, "port": self.port}
        if self.tls is not None:
            args["ssl"] = self.tls
        return args


class _NamedTLS(ssl.SSLContext):
    """A client context that verifies `pinned_name` whatever address the socket went to.

    asyncpg passes its `host` (here the pinned IP) as the TLS server name and has no separate
    setting for it, so the name is put back where the handshake is set up.
    """

    pinned_name: str

    def wrap_bio(  # type: ignore[override]
        self, incoming: Any, outgoing: Any, server_side: bool = False, **kwargs: Any
    ) -> ssl.SSLObject:
        kwargs["server_hostname"] = self.pinned_name
        return super().wrap_bio(incoming, outgoing, server_side, **kwargs)

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["server_hostname"] = self.pinned_name
        return super().wrap_socket(sock, *args, **kwargs)


def _verify_full_context(name: str) -> ssl.SSLContext:
    """What asyncpg builds for sslmode=verify-full, bound to `name` (same root certificates:
    PGSSLROOTCERT, else ~/.postgresql/root.crt, else the system's store)."""
    context = _NamedTLS(ssl.PROTOCOL_TLS_CLIENT)
    context.pinned_name = name
    root = os.environ.get("PGSSLROOTCERT") or str(Path("~/.postgresql/root.crt").expanduser())
    if Path(root).is_file():
        context.load_verify_locations(cafile=root)
    else:
        context.load_default_certs()
    return context


async def pinned_pg_target(
    host: str, port: int, settings: AgentSettings, *, sslmode: str | None = None
) -> PgTarget:
    """Check a PostgreSQL host once and pin the connection to the address that passed.

    `sslmode` is the URL's `ssl` value (or PGSSLMODE); only verify-full checks the server's
    name, so only then is a context built here. Other modes need no name and keep asyncpg's.
    """
    addresses = await check_host(host, port, settings)
    name = host.strip("[]").lower().rstrip(".")
    mode = sslmode if sslmode is not None else os.environ.get("PGSSLMODE")
    tls = _verify_full_context(name) if mode == "verify-full" else None
    return PgTarget(address=str(addresses[0]), port=port, host=name, tls=tls)


def redact_url(url: str | httpx.URL, secrets: Iterable[str] = ()) -> str:
    """The URL without user info, secret-looking query values or any of `secrets`."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode(
        [(k, "REDACTED" if _SENSITIVE.search(k) else v) for k, v in parse_qsl(parts.query, True)]
    )
    shown = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return scrub(shown, secrets)


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port: credentials are sent only within one origin."""
    return (url.scheme, url.host, url.port)


@asynccontextmanager
async def guarded_stream(
    client: httpx.AsyncClient,
    url: str,
    settings: AgentSettings,
    *,
    headers: dict[str, str] | None = None,
    auth_headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    auth_params: dict[str, str] | None = None,
    timeout_s: float | None = None,
    max_redirects: int = 5,
) -> AsyncIterator[httpx.Response]:
    """GET `url` as a stream, checking the URL and every redirect hop against the SSRF policy.

    The auth headers and params go to the first origin only, like a browser's.
    """
    target, addresses = await _check_url(url, settings)
    first = origin(target)
    query = {**(params or {})}
    for _hop in range(max_redirects + 1):
        same = origin(target) == first
        request = client.build_request(
            "GET",
            target,
            headers={**(headers or {}), **((auth_headers or {}) if same else {})},
            params={**query, **((auth_params or {}) if same else {})} or None,
            timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
        )
        port = target.port or (443 if target.scheme == "https" else 80)
        checked = {(target.host.lower().rstrip("."), port): str(addresses[0])}
        pins = _PINS.set({**(_PINS.get() or {}), **checked})
        try:
            response = await client.send(request, stream=True)
        finally:
            _PINS.reset(pins)
        location = response.headers.get("location")
        if response.status_code not in _REDIRECTS or not location:
            try:
                yield response
            finally:
                await response.aclose()
            return
        await response.aclose()
        target, addresses = await _check_url(str(target.join(location)), settings)
        query = {}  # the Location carries its own query
    raise AgentError(f"more than {max_redirects} redirects", code="too_many_redirects")


@asynccontextmanager
async def http_client(
    shared: httpx.AsyncClient, *, verify_tls: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The agent's shared client, or a short-lived one when TLS verification is turned off."""
    if verify_tls:
        yield shared
        return
    async with pinned_client(verify=False, follow_redirects=False, timeout=30.0) as client:
        yield client


# ---------------------------------------------------------------------------- credentials

_ENV_NAME = r"^[A-Z][A-Z0-9_]{0,127}$"
# The platform's own secrets: a body must not be able to send them to a host of its choosing.
_RESERVED = frozenset(
    {
        "DATABASE_URL",
        "REDIS_URL",
        "SERVICE_TOKEN",
        "CONTROLLER_API_KEYS",
        "TEST_DATABASE_URL",
        "TEST_REDIS_URL",
        "PGPASSWORD",
    }
)
_RESERVED_PREFIXES = ("AGENT_", "CONTROLLER_", "ENGINE_", "AWS_", "MLFLOW_", "KUBERNETES_")

CredentialName = Annotated[
    str,
    StringConstraints(pattern=_ENV_NAME),
    Field(
        description="NAME of the environment variable holding the secret (the secret itself "
        "is never accepted in a body)",
        examples=["ORDERS_API_TOKEN"],
    ),
]


def resolve_credential(
    name: str, settings: AgentSettings, *, host: str | None = None, port: int | None = None
) -> str:
    """The value of the environment variable `name`, if declared for `host`.

    Only names listed in AGENT_CREDENTIALS are read, and a credential sent to a host (`host`
    given here, or checked with `credential_may_reach` once a URL it holds is parsed) only to
    the hosts listed for it: a spec can send no other secret of the agent anywhere. Errors name
    the variable, never the value.
    """
    if name in _RESERVED or name.startswith(_RESERVED_PREFIXES):
        raise AgentError(
            f"credential {name!r} is reserved for the platform and cannot be used by a source",
            code="credential_not_allowed",
        )
    if name not in settings.credentials:
        raise AgentError(
            f"credential {name!r} is not declared in AGENT_CREDENTIALS (name -> hosts it may "
            "be sent to); an agent reads no other environment variable for a spec",
            code="credential_not_allowed",
        )
    if host is not None:
        credential_may_reach(name, settings, host, port)
    value = os.environ.get(name)
    if not value:
        raise AgentError(
            f"credential {name!r} is not set in the agent's environment",
            code="credential_missing",
        )
    return value


def credential_may_reach(name: str, settings: AgentSettings, host: str, port: int | None) -> None:
    """Refuse to send credential `name` to `host:port` unless AGENT_CREDENTIALS lists it."""
    allowed = settings.credentials.get(name, [])
    name_of_host = host.strip("[]").lower().rstrip(".")
    try:
        ip: IPAddress | None = ipaddress.ip_address(name_of_host)
    except ValueError:
        ip = None
    for raw in allowed:
        if raw.strip() == "*":
            return
        entry, entry_port = ssrf.split_entry(raw)
        if entry_port is not None and entry_port != port:
            continue
        if entry == name_of_host:
            return
        try:
            if ip is not None and ip in ipaddress.ip_network(entry, strict=False):
                return
        except ValueError:
            continue
    shown = f"{name_of_host}:{port}" if port else name_of_host
    raise AgentError(
        f"credential {name!r} may not be sent to {shown}; AGENT_CREDENTIALS allows it for "
        f"{', '.join(allowed) or 'no host'}",
        code="credential_not_allowed",
    )


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value (also URL-encoded) replaced by ***."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                text = text.replace(form, "***")
    return text


def refuse_secret_headers(headers: dict[str, str]) -> dict[str, str]:
    """Validator for custom headers: secrets belong in `auth`, referenced by name."""
    for name in headers:
        if _SENSITIVE.search(name):
            raise ValueError(
                f"header {name!r} looks like a credential; use auth with a credential name"
            )
    return headers


def refuse_secret_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validator for query parameters (given apart or inside a URL): no inline secrets."""
    for name in params:
        if _SENSITIVE.search(name):
            raise ValueError(
                f"query parameter {name!r} looks like a credential; use auth with place=query"
            )
    return params


def refuse_secret_query(url: str) -> str:
    """Validator for an API URL whose query must not carry a secret."""
    refuse_secret_params(dict(parse_qsl(urlsplit(url).query, True)))
    return url


class HttpAuth(BaseModel):
    """How to authenticate to an HTTP source; the secret is read from an environment variable."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["bearer", "api_key", "basic"] = Field(description="authentication scheme")
    credential: CredentialName
    name: str = Field(
        "X-API-Key",
        description="api_key: the header or query parameter carrying the key",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
    )
    place: Literal["header", "query"] = Field("header", description="api_key: header or query")
    username: str | None = Field(None, description="basic: the user name (not secret)")


@dataclass
class AppliedAuth:
    """Auth resolved into request parts, plus the secret values to scrub from any output."""

    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


def apply_auth(auth: HttpAuth | None, settings: AgentSettings, url: str) -> AppliedAuth:
    """Read the credential (if declared for `url`'s host) and turn `auth` into request parts."""
    if auth is None:
        return AppliedAuth()
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise AgentError(f"invalid URL: {exc}", code="invalid_url") from exc
    port = target.port or (443 if target.scheme == "https" else 80)
    secret = resolve_credential(auth.credential, settings, host=target.host, port=port)
    if auth.type == "bearer":
        return AppliedAuth(headers={"Authorization": f"Bearer {secret}"}, secrets=[secret])
    if auth.type == "basic":
        if not auth.username:
            raise AgentError("basic auth needs auth.username", code="invalid_auth")
        token = base64.b64encode(f"{auth.username}:{secret}".encode()).decode()
        return AppliedAuth(headers={"Authorization": f"Basic {token}"}, secrets=[secret, token])
    if auth.place == "query":
        return AppliedAuth(params={auth.name: secret}, secrets=[secret])
    return AppliedAuth(headers={auth.name: secret}, secrets=[secret])


# ---------------------------------------------------------------------------- file sources


@dataclass(frozen=True)
class ConfinedPath:
    """A location inside an allowed root: the filesystem, the path in it and the root."""

    fs: AbstractFileSystem
    path: str
    root: str
    local: bool

    def inside(self, path: str) -> bool:
        """Whether `path` (from a listing of `fs`) still lies under the root after resolving."""
        if self.local:
            return _under(Path(path).resolve(), Path(self.root))
        norm = posixpath.normpath(path)
        inside = norm == self.root or norm.startswith(self.root + "/")
        return inside and ".." not in norm.split("/")


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _split(location: str) -> tuple[str, str]:
    """(protocol, path) of a local path, file:// URL or fsspec URL."""
    if "::" in location:
        raise AgentError("chained fsspec URLs are not accepted", code="path_not_allowed")
    if "://" not in location:
        return "file", location
    protocol, rest = location.split("://", 1)
    protocol = protocol.lower()
    return ("file", rest) if protocol in ("file", "local") else (protocol, rest)


def confine_path(location: str, settings: AgentSettings) -> ConfinedPath:
    """Refuse a location outside `settings.allowed_roots` (after resolving `..` and symlinks)."""
    protocol, raw = _split(location)
    if protocol == "file":
        resolved = Path(raw).resolve()
        for root in settings.allowed_roots:
            root_protocol, root_raw = _split(root)
            if root_protocol == "file" and _under(resolved, Path(root_raw).resolve()):
                fs = fsspec.filesystem("file")
                return ConfinedPath(fs, str(resolved), str(Path(root_raw).resolve()), True)
    else:
        norm = posixpath.normpath(raw)
        if ".." not in norm.split("/"):
            for root in settings.allowed_roots:
                root_protocol, root_raw = _split(root)
                base = posixpath.normpath(root_raw).rstrip("/")
                if root_protocol == protocol and (norm == base or norm.startswith(base + "/")):
                    fs, path = fsspec.core.url_to_fs(f"{protocol}://{norm}")
                    root_path = fs._strip_protocol(f"{protocol}://{base}")
                    return ConfinedPath(fs, path, root_path.rstrip("/"), False)
    raise AgentError(
        f"{location!r} is outside the allowed roots (AGENT_ALLOWED_ROOTS)",
        code="path_not_allowed",
    )


def safe_glob(pattern: str) -> str:
    """A glob pattern relative to its root: no absolute paths, no `..`."""
    if pattern.startswith("/") or ".." in pattern.split("/") or "::" in pattern:
        raise AgentError(f"glob {pattern!r} must stay inside the root", code="path_not_allowed")
    return pattern
