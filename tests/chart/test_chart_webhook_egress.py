"""The webhooks worker group's egress: the internet, but no internal, cluster or metadata address.

The rendered NetworkPolicies are evaluated as Kubernetes does for address peers: a worker pod
reaches `address:port` when some Egress policy that selects it has a rule whose ports include the
port and one of whose ipBlocks holds the address outside its `except` ranges. The app's own
lists of refused ranges (`service.outbound.egress`) are the yardstick, so the chart and the app
cannot drift apart.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from service.outbound.egress import SPECIAL_IPV4, SPECIAL_IPV6
from tests.support.chart import NAME, by_kind, one

ENABLED = {"networkPolicy": {"enabled": True}}

INTERNAL = [
    "169.254.169.254",  # cloud metadata
    "10.96.0.10",  # a Service ClusterIP (kube-dns, Redis)
    "10.244.1.5",  # a pod
    "172.20.0.1",
    "192.168.1.1",
    "100.64.0.1",  # shared space: some clusters' pods
    "127.0.0.1",
    "0.0.0.0",
    "::1",
    "fd00::1",  # unique local: IPv6 clusters' pods and Services
    "fe80::1",
    "fd00:ec2::254",  # the IPv6 metadata service
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",
    "2001::a9fe:a9fe",
]
PUBLIC = ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::1"]


def pod_labels(docs: list[dict[str, Any]], group: str) -> dict[str, str]:
    deployment = one(docs, "Deployment", NAME.format(f"worker-{group}"))
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def reachable(docs: list[dict[str, Any]], pod: dict[str, str], address: str, port: int) -> bool:
    """Whether the release's NetworkPolicies let `pod` open a TCP connection to `address:port`
    through an ipBlock (pod and namespace peers name no address)."""
    ip = ipaddress.ip_address(address)
    for policy in by_kind(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if "Egress" not in spec["policyTypes"]:
            continue
        if not spec["podSelector"].get("matchLabels", {}).items() <= pod.items():
            continue
        for rule in spec.get("egress", []):
            ports = rule.get("ports")
            if ports and port not in {p["port"] for p in ports if p.get("protocol") == "TCP"}:
                continue
            if "to" not in rule:
                return True  # every destination
            for peer in rule["to"]:
                block = peer.get("ipBlock")
                if (
                    block
                    and ip in ipaddress.ip_network(block["cidr"])
                    and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
                ):
                    return True
    return False


def edges(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    return [str(network.network_address), str(network.broadcast_address)]


def test_webhook_workers_reach_public_addresses_on_web_ports_only(render):
    docs = render(ENABLED)
    webhooks = pod_labels(docs, "webhooks")
    for address in PUBLIC:
        assert reachable(docs, webhooks, address, 443), address
        assert reachable(docs, webhooks, address, 80), address
        assert not reachable(docs, webhooks, address, 6379), address
    general = pod_labels(docs, "general")  # delivers no webhooks
    assert not any(reachable(docs, general, address, 443) for address in PUBLIC)


@pytest.mark.parametrize("port", [80, 443])
def test_webhook_workers_reach_no_internal_cluster_or_metadata_address(render, port):
    docs = render(ENABLED)
    webhooks = pod_labels(docs, "webhooks")
    for address in INTERNAL:
        assert not reachable(docs, webhooks, address, port), address


def test_every_range_the_app_refuses_is_excepted_by_default(render):
    docs = render(ENABLED)
    webhooks = pod_labels(docs, "webhooks")
    for network in SPECIAL_IPV4 + SPECIAL_IPV6:
        for address in edges(network):
            assert not reachable(docs, webhooks, address, 443), f"{address} ({network})"
    # and IPv6 outside global unicast (2000::/3), which the app refuses as a whole
    for address in ("::2", "1fff::1", "4000::1", "7fff::1", "8000::1", "fbff::1", "ffff::1"):
        assert not reachable(docs, webhooks, address, 443), address


def test_cluster_ranges_outside_the_internal_ones_are_excepted_too(render):
    cluster = ["34.118.224.0/20", "2600:1900:4000::/44"]  # public-looking pod/Service ranges
    inside = ["34.118.230.7", "2600:1900:4000::a"]
    docs = render(ENABLED)
    webhooks = pod_labels(docs, "webhooks")
    assert all(reachable(docs, webhooks, address, 443) for address in inside)
    docs = render({"networkPolicy": {"enabled": True, "internet": {"clusterCidrs": cluster}}})
    for address in inside:
        assert not reachable(docs, webhooks, address, 443), address
    assert all(reachable(docs, webhooks, address, 443) for address in PUBLIC)


def test_allowed_networks_are_opened_and_nothing_else_internal(render):
    docs = render({**ENABLED, "webhooks": {"allowedNetworks": ["10.1.0.0/16", "fd00:1::/64"]}})
    webhooks = pod_labels(docs, "webhooks")
    assert reachable(docs, webhooks, "10.1.2.3", 443)
    assert reachable(docs, webhooks, "fd00:1::5", 443)
    assert not reachable(docs, webhooks, "10.2.0.1", 443)
    assert not reachable(docs, webhooks, "169.254.169.254", 80)


def test_webhook_workers_may_ask_the_cluster_dns(render):
    docs = render(ENABLED)
    webhooks = pod_labels(docs, "webhooks")
    dns = one(docs, "NetworkPolicy", NAME.format("dns"))
    assert dns["spec"]["podSelector"]["matchLabels"].items() <= webhooks.items()
    [rule] = dns["spec"]["egress"]
    assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
