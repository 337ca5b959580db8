"""The webhook egress guard: internal addresses are refused unless allowed."""

from __future__ import annotations

import pytest

from service.outbound.egress import EgressRefused, check_url, parse_networks
from service.reliability.retry import is_transient


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://172.16.3.4/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://100.64.0.1/hook",  # shared address space (carrier NAT)
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4 loopback dressed as IPv6
        "http://224.0.0.1/hook",
    ],
)
def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused, match="internal address") as refused:
        check_url(url)
    assert not is_transient(refused.value)  # a refused URL is dead-lettered, not retried


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/x", "http:///nohost", "file:///etc/passwd"])
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused, match="only http"):
        check_url(url)


def test_public_addresses_pass() -> None:
    assert [str(ip) for ip in check_url("https://93.184.216.34/hook")] == ["93.184.216.34"]


def test_allowed_networks_let_internal_addresses_through() -> None:
    allowed = parse_networks(["127.0.0.0/8", "10.1.0.0/16"])
    assert check_url("http://127.0.0.1:9000/x", allowed)
    assert check_url("http://10.1.2.3/x", allowed)
    with pytest.raises(EgressRefused):
        check_url("http://10.2.0.1/x", allowed)


def test_a_bad_allowed_network_names_the_setting() -> None:
    with pytest.raises(ValueError, match="WEBHOOK_ALLOWED_NETWORKS"):
        parse_networks(["10.0.0.0/33"])
