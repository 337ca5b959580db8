"""The service's webhook transport aimed at a receiver on loopback, for tests and benchmarks.

The egress guard refuses loopback addresses, so the destination is built as if vetted: the
POST then goes through everything else a delivery goes through (`service.outbound.http.post`:
a pinned connection, bounded read, classified answer).
"""

from __future__ import annotations

from ipaddress import ip_address

from service.outbound.egress import Destination
from service.outbound.http import post


def post_to_loopback(port: int, path: str, timeout: float = 10.0) -> int:
    """POST `{}` as JSON to http://127.0.0.1:`port``path`; the answer's status."""
    destination = Destination(
        url=f"http://127.0.0.1:{port}{path}",
        scheme="http",
        host="127.0.0.1",
        port=port,
        addresses=(ip_address("127.0.0.1"),),
    )
    return post(destination, b"{}", {"Content-Type": "application/json"}, timeout, 4096)
