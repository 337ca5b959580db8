"""The webhook egress guard: which addresses are internal, and the allow-list's exceptions.

The tables spell addresses out one by one, each with the range it stands for, instead of
reusing the guard's own lists: a range dropped from the guard fails here.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from devstack.state import prepare_state
from service.outbound.egress import (
    AllowedNetwork,
    EgressRefused,
    HostUnresolved,
    IPAddress,
    Resolver,
    parse_allowed,
    resolve_host,
    vet_url,
)
from service.reliability.retry import TransientError, is_transient

#: One address (or two: a range's first and last) of every IPv4 special-purpose range.
SPECIAL_IPV4 = [
    ("0.0.0.0", "this network"),
    ("0.255.255.255", "this network"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.1", "shared address space"),
    ("100.127.255.254", "shared address space"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local: cloud metadata"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "IETF protocol assignments"),
    ("192.0.0.170", "NAT64 discovery"),
    ("192.0.2.1", "TEST-NET-1"),
    ("192.31.196.1", "AS112-v4"),
    ("192.52.193.1", "AMT"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("192.168.1.1", "private"),
    ("192.175.48.1", "AS112 direct delegation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "TEST-NET-2"),
    ("203.0.113.9", "TEST-NET-3"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "limited broadcast"),
]

#: IPv6 forms that carry an IPv4 address, with a public one inside too: the form is refused,
#: whatever it carries.
IPV4_EMBEDDING_IPV6 = [
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:169.254.169.254", "IPv4-mapped metadata"),
    ("::ffff:93.184.216.34", "IPv4-mapped public"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::93.184.216.34", "IPv4-compatible public"),
    ("::ffff:0:a9fe:a9fe", "IPv4-translated (SIIT)"),
    ("64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254"),
    ("64:ff9b::5db8:d822", "NAT64 of a public address"),
    ("64:ff9b:1::a00:1", "NAT64 local-use"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001::1", "Teredo"),
    ("2002:a9fe:a9fe::1", "6to4 of 169.254.169.254"),
    ("2002:5db8:d822::1", "6to4 of a public address"),
]

#: The rest of the IPv6 special-purpose registry, and what lies outside global unicast.
SPECIAL_IPV6 = [
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("100::1", "discard-only"),
    ("100:0:0:1::1", "dummy prefix"),
    ("2001:2::1", "benchmarking"),
    ("2001:10::1", "ORCHID"),
    ("2001:20::1", "ORCHIDv2"),
    ("2001:1ff:ffff::1", "IETF protocol assignments"),
    ("2001:db8::1", "documentation"),
    ("2620:4f:8000::1", "AS112 direct delegation"),
    ("3fff::1", "documentation"),
    ("5f00::1", "segment routing"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("4000::1", "outside global unicast"),
    ("e000::1", "outside global unicast"),
]

PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below shared address space
    "100.128.0.0",  # just above it
    "172.32.0.1",  # just above 172.16.0.0/12
    "198.20.0.1",  # just above benchmarking
    "223.255.255.254",  # just below multicast
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",  # 2001:4860::/32 lies above the IETF block 2001::/23
    "2a00:1450:4001::1",
]


def literal(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def answers(*ips: str) -> Resolver:
    """A resolver that answers every name with `ips`."""

    def resolve(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address(ip) for ip in ips]

    return resolve


@pytest.mark.parametrize(
    ("ip", "why"), SPECIAL_IPV4 + IPV4_EMBEDDING_IPV6 + SPECIAL_IPV6, ids=lambda v: v
)
def test_special_addresses_are_refused_as_literals_and_behind_names(ip: str, why: str) -> None:
    with pytest.raises(EgressRefused, match="refused: internal address") as refused:
        vet_url(f"http://{literal(ip)}/hook")
    assert not is_transient(refused.value), why  # dead-lettered, not retried
    with pytest.raises(EgressRefused) as refused:
        vet_url("https://hooks.example/hook", resolve=answers(ip))
    message = str(refused.value)
    assert message.startswith("hooks.example: refused: internal address"), why
    assert ip not in message and str(ipaddress.ip_address(ip)) not in message


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_pass_and_are_what_the_connection_uses(ip: str) -> None:
    destination = vet_url("https://hooks.example:8443/hook", resolve=answers(ip))
    assert destination.addresses == (ipaddress.ip_address(ip),)
    assert (destination.host, destination.port, destination.scheme) == (
        "hooks.example",
        8443,
        "https",
    )
    assert vet_url(f"http://{literal(ip)}/hook").addresses == (ipaddress.ip_address(ip),)


def test_every_address_of_a_name_is_vetted() -> None:
    with pytest.raises(EgressRefused, match="refused: internal address"):
        vet_url("https://hooks.example/", resolve=answers("93.184.216.34", "10.0.0.1"))
    both = vet_url("https://hooks.example/", resolve=answers("93.184.216.34", "2606:4700::1"))
    assert [str(ip) for ip in both.addresses] == ["93.184.216.34", "2606:4700::1"]


def test_a_name_is_resolved_once_with_its_port() -> None:
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> Sequence[IPAddress]:
        asked.append((host, port))
        return [ipaddress.ip_address("93.184.216.34")]

    vet_url("https://Hooks.Example/x", resolve=resolve)
    vet_url("http://hooks.example/x", resolve=resolve)
    assert asked == [("hooks.example", 443), ("hooks.example", 80)]


def test_the_host_vetted_is_the_host_the_client_requests() -> None:
    # urllib reads the host as "public.example\"; the HTTP client (and a browser) as 127.0.0.1
    with pytest.raises(EgressRefused, match="127.0.0.1: refused"):
        vet_url("http://public.example\\@127.0.0.1/", resolve=answers("93.184.216.34"))
    # an international name is resolved and connected to in its ASCII form
    assert vet_url("https://bücher.example/", resolve=answers("1.1.1.1")).host == (
        "xn--bcher-kva.example"
    )


@pytest.mark.parametrize(
    ("entries", "url", "ip", "passes"),
    [
        (["10.1.0.0/16"], "http://h.test/", "10.1.2.3", True),
        (["10.1.0.0/16"], "http://h.test/", "10.2.0.1", False),
        (["127.0.0.1:8090"], "http://h.test:8090/", "127.0.0.1", True),
        (["127.0.0.1:8090"], "http://h.test:6379/", "127.0.0.1", False),  # Redis' port
        (["127.0.0.1:8090"], "http://h.test:8090/", "127.0.0.2", False),
        (["10.0.0.0/8:443"], "https://h.test/", "10.9.9.9", True),  # the scheme's port
        (["10.0.0.0/8:443"], "http://h.test/", "10.9.9.9", False),
        (["[fd00::/8]:443"], "https://h.test/", "fd00::5", True),
        (["fd00::/8"], "http://h.test:1/", "fd00::5", True),
        (["[::1]:8090"], "http://h.test:8090/", "::1", True),
        # an IPv4 entry does not admit the IPv4-mapped form of its addresses
        (["127.0.0.0/8"], "http://h.test/", "::ffff:127.0.0.1", False),
        # an explicit exception holds even for the metadata address
        (["169.254.169.254/32:80"], "http://h.test/", "169.254.169.254", True),
    ],
)
def test_the_allow_list_admits_its_networks_on_its_ports(
    entries: list[str], url: str, ip: str, passes: bool
) -> None:
    if passes:
        assert vet_url(url, entries, answers(ip)).addresses == (ipaddress.ip_address(ip),)
    else:
        with pytest.raises(EgressRefused, match="refused: internal address"):
            vet_url(url, entries, answers(ip))


def test_allow_list_entries_parse_to_networks_and_ports() -> None:
    assert parse_allowed(["10.0.0.0/8", "127.0.0.1:8090", "[fd00::/8]:443", "::1"]) == [
        AllowedNetwork(ipaddress.ip_network("10.0.0.0/8")),
        AllowedNetwork(ipaddress.ip_network("127.0.0.1/32"), 8090),
        AllowedNetwork(ipaddress.ip_network("fd00::/8"), 443),
        AllowedNetwork(ipaddress.ip_network("::1/128")),
    ]


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "127.0.0.1:0", "127.0.0.1:99999", "x:80"])
def test_a_bad_allow_list_entry_names_the_setting_and_the_entry(entry: str) -> None:
    with pytest.raises(ValueError, match=f"WEBHOOK_ALLOWED_NETWORKS: '{entry}'"):
        parse_allowed([entry])


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/x", "http:///nohost", "file:///etc/passwd"])
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused, match="only http"):
        vet_url(url)


def test_a_name_without_addresses_is_unresolved_and_permanent() -> None:
    with pytest.raises(HostUnresolved, match="hooks.example: does not resolve") as refused:
        vet_url("http://hooks.example/", resolve=answers())
    assert not is_transient(refused.value)


def test_the_system_resolver_answers_names_and_tells_a_missing_name() -> None:
    assert ipaddress.ip_address("127.0.0.1") in resolve_host("localhost", 80)
    try:
        resolve_host("nothing.invalid", 80)  # RFC 6761: never exists
    except TransientError:
        pytest.skip("this machine's resolver cannot answer at all")
    except HostUnresolved as exc:
        assert "nothing.invalid: does not resolve" in str(exc)
    else:
        pytest.fail("nothing.invalid resolved")


def test_the_local_stack_lets_webhooks_reach_its_receiver_and_nothing_else_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLASK_WEBHOOK_ALLOWED_NETWORKS", raising=False)
    env = prepare_state(tmp_path, smtp_port=8025, webhook_port=8090)
    allowed = json.loads(env["FLASK_WEBHOOK_ALLOWED_NETWORKS"])
    assert vet_url("http://127.0.0.1:8090/hooks/demo", allowed).port == 8090
    for port in (6379, 8000, 5555, 8025, 9808):  # Redis, web, Flower, the SMTP sink, metrics
        with pytest.raises(EgressRefused, match="refused: internal address"):
            vet_url(f"http://127.0.0.1:{port}/", allowed)
