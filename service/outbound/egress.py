"""Where webhooks may go: a URL is vetted once, and the request goes to the vetted addresses.

A webhook URL is user input. Without a guard, `http://169.254.169.254/` reads cloud
credentials and `http://redis:6379/` talks to our own broker. `vet_url` resolves the host once
and refuses it unless every address is public: nothing in the IANA special-purpose registries
(IPv4 and IPv6; loopback, private, shared, link-local, documentation, benchmarking, ...), no
multicast or reserved space, no IPv6 outside global unicast (2000::/3), and none of the IPv6
forms that carry an IPv4 address inside them (IPv4-mapped and -compatible, SIIT, NAT64, 6to4,
Teredo), whose IPv4 side could be anything. The ranges are explicit lists here, not
`ipaddress`'s `is_private`/`is_global`, whose answers change between Python versions.

`WEBHOOK_ALLOWED_NETWORKS` names the exceptions: a network (`10.1.0.0/16`), or a network and
one port (`127.0.0.1:8090`, `10.1.0.0/16:8443`, `[fd00::/8]:443`).

The answer is a `Destination` that holds the vetted addresses; `service.outbound.http`
connects to those and to nothing else, so a name that answers differently the second time (DNS
rebinding) never gets a second lookup. The same function vets a URL when an endpoint is
created, so most bad URLs are refused before anything is queued; delivery vets again, since a
name's answers change. A refusal names the host but not the addresses it resolved to: the
message reaches API clients, who need not learn the internal network.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

from ..reliability.retry import PermanentError, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: (host name in ASCII, port) -> its addresses. Raises `HostUnresolved` when the name does not
#: exist, `TransientError` when the resolver could not answer.
Resolver = Callable[[str, int], Sequence[IPAddress]]

_v4, _v6 = ipaddress.IPv4Network, ipaddress.IPv6Network

#: IANA IPv4 Special-Purpose Address Registry, every entry, plus multicast (RFC 5771).
SPECIAL_IPV4: tuple[ipaddress.IPv4Network, ...] = tuple(map(_v4, (
    "0.0.0.0/8",  # this network
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # shared address space (carrier-grade NAT, some clusters' pods)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local: the cloud metadata service
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery, ...)
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "192.31.196.0/24",  # AS112-v4
    "192.52.193.0/24",  # AMT
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",  # private
    "192.175.48.0/24",  # direct delegation AS112
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",  # documentation (TEST-NET-3)
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast address
)))  # fmt: skip

#: IPv6 forms with an IPv4 address inside: what they reach depends on that address.
IPV4_EMBEDDING_IPV6: tuple[ipaddress.IPv6Network, ...] = tuple(map(_v6, (
    "::/96",  # IPv4-compatible (deprecated), also :: and ::1
    "::ffff:0:0/96",  # IPv4-mapped
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    "64:ff9b::/96",  # NAT64 well-known prefix
    "64:ff9b:1::/48",  # NAT64 local-use prefix
    "2001::/32",  # Teredo
    "2002::/16",  # 6to4
)))  # fmt: skip

#: IANA IPv6 Special-Purpose Address Registry, every entry (those above included), plus
#: multicast and deprecated site-local space.
SPECIAL_IPV6: tuple[ipaddress.IPv6Network, ...] = IPV4_EMBEDDING_IPV6 + tuple(map(_v6, (
    "::1/128",  # loopback
    "::/128",  # unspecified
    "100::/64",  # discard-only
    "100:0:0:1::/64",  # dummy prefix
    "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID, AMT, AS112, ...)
    "2001:db8::/32",  # documentation
    "2620:4f:8000::/48",  # direct delegation AS112
    "3fff::/20",  # documentation
    "5f00::/16",  # segment routing SIDs
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated)
    "ff00::/8",  # multicast
)))  # fmt: skip

#: The only IPv6 space that is public at all; the lists above are carved out of it.
GLOBAL_UNICAST_IPV6 = _v6("2000::/3")


class EgressRefused(PermanentError):
    """The URL points somewhere webhooks may not go; the message says where and why."""


class HostUnresolved(EgressRefused):
    """The URL's host name does not exist (or has no address)."""


@dataclass(frozen=True)
class AllowedNetwork:
    """An exception to the rule: a network webhooks may reach, on one port or on any."""

    network: Network
    port: int | None = None

    def admits(self, ip: IPAddress, port: int) -> bool:
        return ip in self.network and self.port in (None, port)


@dataclass(frozen=True)
class Destination:
    """A vetted URL: connect to `addresses` (in order) for `host`, and to nothing else."""

    url: str
    scheme: str
    #: The host as it goes on the wire: IDNA-encoded, IPv6 without brackets.
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def is_special(ip: IPAddress) -> bool:
    """True when `ip` is not a plain public unicast address."""
    if isinstance(ip, ipaddress.IPv4Address):
        return any(ip in net for net in SPECIAL_IPV4)
    return ip not in GLOBAL_UNICAST_IPV6 or any(ip in net for net in SPECIAL_IPV6)


def parse_allowed(values: Iterable[str]) -> list[AllowedNetwork]:
    """`WEBHOOK_ALLOWED_NETWORKS` entries to networks and ports; a bad entry is a configuration
    error naming it."""
    return [_parse_allowed(value) for value in values]


def _parse_allowed(value: str) -> AllowedNetwork:
    network, port = value, ""
    if value.startswith("["):  # [IPv6 network]:port
        network, _, port = value[1:].partition("]:")
    elif value.count(":") == 1:  # IPv4 network:port
        network, port = value.split(":")
    try:
        number = int(port) if port else None
        if number is not None and not 0 < number < 65536:
            raise ValueError(f"port {number} is out of range")
        return AllowedNetwork(ipaddress.ip_network(network, strict=False), number)
    except ValueError as exc:
        raise ValueError(f"WEBHOOK_ALLOWED_NETWORKS: {value!r}: {exc}") from exc


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The system resolver's addresses for `host`, without duplicates, in its order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:  # the resolver is struggling: worth a retry
            raise TransientError(f"{host}: {exc.strerror}") from exc
        raise HostUnresolved(f"{host}: does not resolve ({exc.strerror})") from exc
    found = (ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
    return list(dict.fromkeys(found))


def vet_url(url: str, allowed: Iterable[str] = (), resolve: Resolver = resolve_host) -> Destination:
    """Resolve `url`'s host once; refuse it unless every address is public or allowed.

    The URL is parsed as the HTTP client parses it, so the host that is vetted is the host the
    request is for. `allowed` holds `WEBHOOK_ALLOWED_NETWORKS` entries.
    """
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise EgressRefused(f"{url}: not a valid URL ({exc})") from exc
    host = parts.raw_host.decode("ascii")
    if parts.scheme not in ("http", "https") or not host:
        raise EgressRefused(f"{url}: only http(s) URLs with a host are allowed")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses: Sequence[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = resolve(host, port)
    if not addresses:
        raise HostUnresolved(f"{host}: does not resolve (no address)")
    exceptions = parse_allowed(allowed)
    for ip in addresses:
        if is_special(ip) and not any(entry.admits(ip, port) for entry in exceptions):
            raise EgressRefused(
                f"{host}: refused: internal address; webhooks reach public addresses only "
                "(WEBHOOK_ALLOWED_NETWORKS lists the exceptions)"
            )
    return Destination(url, parts.scheme, host, port, tuple(addresses))
