"""Which network addresses the platform may call: the one SSRF rule, shared by the agents'
fetches (`agents/base/security.py`) and the controller's checks of registered agents' URLs.

Link-local and cloud-metadata addresses are refused always; private, loopback and other
non-global addresses only when an allowlist entry names the host (or `host:port`, a CIDR or
`CIDR:port`) holding every address it resolves to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints beyond 169.254.0.0/16 (AWS IPv6, Alibaba, Azure wire server).
_METADATA = {ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "168.63.129.16")}
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "instance-data"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(Exception):
    """The host may not be called (never worth retrying)."""


class TargetUnresolvable(Exception):
    """DNS gave no address; may be transient."""


def effective(ip: IPAddress) -> IPAddress:
    """The IPv4 address hidden in an IPv4-mapped or NAT64 IPv6 address, else `ip`."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def always_blocked(ip: IPAddress) -> bool:
    """Addresses no allowlist opens: link-local, unspecified, multicast, cloud metadata."""
    return ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip in _METADATA


def split_entry(entry: str) -> tuple[str, int | None]:
    """An allowlist entry as (host or CIDR, port or None): `h`, `h:p`, `[v6]:p`, `cidr:p`."""
    entry = entry.strip().lower().rstrip(".")
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:  # one colon: host:port (an IPv6 literal has several)
        host, port = entry.split(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def allowlisted(host: str, ip: IPAddress, port: int, allow: Iterable[str]) -> bool:
    """Whether an entry of `allow` opens `host` (resolved to `ip`) on `port`."""
    for raw in allow:
        entry, entry_port = split_entry(raw)
        if not entry or (entry_port is not None and entry_port != port):
            continue
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            if entry == host:
                return True
    return False


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolvable(f"cannot resolve host {host!r}: {exc}") from exc
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}
    if not addresses:
        raise TargetUnresolvable(f"host {host!r} has no address")
    return sorted(addresses, key=str)


async def check_target(
    host: str, port: int, allow: Iterable[str], *, setting: str
) -> list[IPAddress]:
    """Refuse `host` unless every address it resolves to may be reached; return them.

    `setting` names the allowlist in the refusal, so the message says what to change.
    """
    name = host.strip("[]").lower().rstrip(".")
    if not name:
        raise TargetRefused("the URL has no host")
    if name in _METADATA_NAMES:
        raise TargetRefused(f"{name!r} is a cloud-metadata host; it is never fetched")
    allow = list(allow)
    addresses = await resolve(name, port)
    for raw in addresses:
        ip = effective(raw)
        if always_blocked(ip):
            raise TargetRefused(
                f"host {name!r} resolves to {raw}, a link-local or cloud-metadata address; "
                "such addresses are never fetched"
            )
        if not ip.is_global and not allowlisted(name, ip, port, allow):
            raise TargetRefused(
                f"host {name!r} port {port} resolves to the private address {raw}; add the "
                f"host, host:port or a CIDR holding it to {setting} to allow it"
            )
    return addresses
