"""shared/ssrf.py, the one rule for which addresses the platform may call: link-local and
cloud metadata never, private ones only when an allowlist entry names them."""

from __future__ import annotations

import ipaddress

import pytest

from shared.ssrf import TargetRefused, check_target, effective, split_entry

SETTING = "AGENT_ALLOW_PRIVATE_HOSTS"


async def test_a_public_address_is_allowed_without_any_entry() -> None:
    assert await check_target("8.8.8.8", 443, [], setting=SETTING) == [
        ipaddress.ip_address("8.8.8.8")
    ]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.1.2.3", "[::1]", "::ffff:127.0.0.1", "localhost"]
)
async def test_a_private_address_is_refused_naming_the_setting(host: str) -> None:
    with pytest.raises(TargetRefused, match=f"private address .*to {SETTING} to allow it"):
        await check_target(host, 80, [], setting=SETTING)


@pytest.mark.parametrize(
    ("host", "port", "allow"),
    [
        ("127.0.0.1", 80, ["127.0.0.1"]),
        ("127.0.0.1", 8080, ["127.0.0.1:8080"]),
        ("10.1.2.3", 5432, ["10.0.0.0/8"]),
        ("10.1.2.3", 5432, ["10.0.0.0/8:5432"]),
        ("::1", 80, ["[::1]:80"]),
        ("localhost", 80, ["LOCALHOST."]),
    ],
)
async def test_an_entry_naming_the_host_port_or_network_opens_it(
    host: str, port: int, allow: list[str]
) -> None:
    assert await check_target(host, port, allow, setting=SETTING)


@pytest.mark.parametrize(
    ("host", "port", "allow"),
    [
        ("127.0.0.1", 81, ["127.0.0.1:80"]),  # another port
        ("10.1.2.3", 80, ["192.168.0.0/16"]),  # another network
        ("127.0.0.1", 80, ["localhost"]),  # a name opens that name, not its addresses
    ],
)
async def test_an_entry_opens_only_what_it_names(host: str, port: int, allow: list[str]) -> None:
    with pytest.raises(TargetRefused):
        await check_target(host, port, allow, setting=SETTING)


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",  # the metadata service of most clouds
        "[fe80::1]",
        "0.0.0.0",
        "fd00:ec2::254",  # AWS's over IPv6
        "64:ff9b::a9fe:a9fe",  # 169.254.169.254 through NAT64
        "::ffff:169.254.169.254",
        "metadata.google.internal",
    ],
)
async def test_link_local_and_metadata_addresses_are_refused_whatever_the_allowlist(
    host: str,
) -> None:
    everything = ["0.0.0.0/0", "::/0", host.strip("[]")]
    with pytest.raises(TargetRefused, match="never fetched"):
        await check_target(host, 80, everything, setting=SETTING)


def test_the_ipv4_address_hidden_in_an_ipv6_one_is_what_is_judged() -> None:
    assert effective(ipaddress.ip_address("::ffff:10.0.0.1")) == ipaddress.ip_address("10.0.0.1")
    assert effective(ipaddress.ip_address("64:ff9b::a00:1")) == ipaddress.ip_address("10.0.0.1")
    assert effective(ipaddress.ip_address("2001:db8::1")) == ipaddress.ip_address("2001:db8::1")


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("Host.Example.", ("host.example", None)),
        ("host:8080", ("host", 8080)),
        ("[::1]:5432", ("::1", 5432)),
        ("[::1]", ("::1", None)),
        ("fd00::/8", ("fd00::/8", None)),
        ("10.0.0.0/8:443", ("10.0.0.0/8", 443)),
    ],
)
def test_allowlist_entries_are_read_with_or_without_a_port(
    entry: str, parsed: tuple[str, int | None]
) -> None:
    assert split_entry(entry) == parsed


async def test_a_url_without_a_host_is_refused() -> None:
    with pytest.raises(TargetRefused, match="no host"):
        await check_target("", 80, ["0.0.0.0/0"], setting=SETTING)
