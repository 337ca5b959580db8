"""A DNS server on loopback whose answer for a name follows a script, and a resolver that asks it.

`ScriptedDns.answer("hooks.test", ["127.0.0.1"], ["127.0.0.2"])` answers the first lookup of
hooks.test with 127.0.0.1 and every later one with 127.0.0.2: a name that changes its answer
between a check and a connection (DNS rebinding). A lookup is an A query (then an AAAA query,
answered from the same step); names without a script get NXDOMAIN. `ScriptedDns.resolver()` is a
`service.outbound.egress.Resolver` that asks this server instead of the system's.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Sequence
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from service.outbound.egress import HostUnresolved, IPAddress, Resolver
from service.reliability.retry import TransientError

HOST = "127.0.0.1"


class ScriptedDns(BaseResolver):  # type: ignore[misc]
    """The server (UDP on 127.0.0.1, a free port) and its script."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[list[str]]] = {}
        self._current: dict[str, list[str]] = {}
        #: Every question asked, in order: (name without the final dot, "A" or "AAAA").
        self.queries: list[tuple[str, str]] = []
        self._server = DNSServer(self, address=HOST, port=0, logger=DNSLogger(logf=_quiet))
        self.port: int = self._server.server.server_address[1]

    def answer(self, name: str, *steps: Sequence[str]) -> None:
        """Answer lookups of `name` with each step's addresses in turn, the last one for good."""
        with self._lock:
            self._scripts[name] = [list(step) for step in steps]
            self._current.pop(name, None)

    def lookups(self, name: str) -> int:
        """How many times `name` was looked up (its A queries)."""
        return sum(1 for q in self.queries if q == (name, "A"))

    def resolve(self, request: Any, handler: Any) -> Any:  # dnslib's resolver interface
        reply = request.reply()
        name, qtype = str(request.q.qname).rstrip("."), QTYPE[request.q.qtype]
        with self._lock:
            self.queries.append((name, qtype))
            script = self._scripts.get(name)
            if script is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            if qtype == "A" or name not in self._current:
                self._current[name] = script.pop(0) if len(script) > 1 else script[0]
            step = self._current[name]
        for address in map(ipaddress.ip_address, step):
            if qtype == "A" and address.version == 4:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(str(address)), ttl=0))
            if qtype == "AAAA" and address.version == 6:
                reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(str(address)), ttl=0))
        return reply

    def resolver(self) -> Resolver:
        """A resolver for `egress.vet_url` that asks this server: A, then AAAA."""

        def resolve(host: str, port: int) -> list[IPAddress]:
            found: list[IPAddress] = []
            for qtype in ("A", "AAAA"):
                try:
                    raw = DNSRecord.question(host, qtype).send(HOST, self.port, timeout=2)
                except OSError as exc:
                    raise TransientError(f"{host}: {exc}") from exc
                reply = DNSRecord.parse(raw)
                if reply.header.rcode == RCODE.NXDOMAIN:
                    raise HostUnresolved(f"{host}: does not resolve (NXDOMAIN)")
                found += [ipaddress.ip_address(str(rr.rdata)) for rr in reply.rr]
            return found

        return resolve

    def start(self) -> ScriptedDns:
        self._server.start_thread()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()


def _quiet(_line: str) -> None:
    pass
