"""Outbound HTTP guard for webhooks: no requests to this side of the network by default.

A webhook URL is user input. Without a guard, `http://169.254.169.254/` reads cloud
credentials and `http://redis:6379/` talks to our own broker. Every address the host name
resolves to must be public: loopback, private, link-local (the metadata service), shared,
multicast, reserved and unspecified addresses are refused. `WEBHOOK_ALLOWED_NETWORKS` lists
networks (CIDR) that are allowed anyway, for development and tests.

The check resolves the name just before the request; a name that changes its answer between
the check and the connection (DNS rebinding) is not caught here, so egress NetworkPolicies
remain the second line.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..reliability.retry import PermanentError, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressRefused(PermanentError):
    """The URL points somewhere webhooks may not go; the message says where and why."""


def _is_internal(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _is_internal(ip.ipv4_mapped)
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


def parse_networks(values: Iterable[str]) -> list[Network]:
    """CIDR strings to networks; a bad entry is a configuration error naming it."""
    try:
        return [ipaddress.ip_network(v, strict=False) for v in values]
    except ValueError as exc:
        raise ValueError(f"WEBHOOK_ALLOWED_NETWORKS: {exc}") from exc


def check_url(url: str, allowed: Iterable[Network] = ()) -> list[IPAddress]:
    """Resolve `url`'s host and refuse it unless every address is public or allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused(f"{url}: only http(s) URLs with a host are allowed")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:  # the resolver is struggling: worth a retry
            raise TransientError(f"{parts.hostname}: {exc.strerror}") from exc
        raise EgressRefused(f"{parts.hostname}: does not resolve ({exc.strerror})") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    allowed = list(allowed)
    for ip in addresses:
        if _is_internal(ip) and not any(ip in net for net in allowed):
            raise EgressRefused(
                f"{parts.hostname} resolves to {ip}, an internal address; webhooks may only "
                "reach public addresses (allow a network with WEBHOOK_ALLOWED_NETWORKS)"
            )
    return addresses
