"""A loopback TCP port whose every connection is relayed to a socket the caller opens.

The cluster tests open one to the web Service's pods through the API server's port-forward
(`kubernetes.stream.portforward`, which hands back a socket per forwarded port), so an
ordinary HTTP client can talk to the release; each connection asks for a fresh remote socket,
so a connection made after a rollout reaches a pod that exists. Tested offline with local
sockets in tests/unit/test_e2e_relay.py.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable
from typing import Any

#: Bytes moved per read.
CHUNK = 65536


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways between `a` and `b` until either side closes; then close both."""
    try:
        while True:
            readable, _, _ = select.select([a, b], [], [], 1.0)
            for source in readable:
                data = source.recv(CHUNK)
                if not data:
                    return
                (b if source is a else a).sendall(data)
    except OSError:
        return
    finally:
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass


class Relay:
    """127.0.0.1:`port` relaying each accepted connection to `connect()`'s socket.

    `connect` returns the remote socket and anything that must stay referenced while it is in
    use (the port-forward object that owns it), or raises to refuse the connection."""

    def __init__(self, connect: Callable[[], tuple[socket.socket, Any]]) -> None:
        self._connect = connect
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                local, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(local,), daemon=True).start()

    def _serve(self, local: socket.socket) -> None:
        try:
            remote, owner = self._connect()
        except Exception:  # noqa: BLE001 - no remote: the client sees the connection close
            local.close()
            return
        pipe(local, remote)
        del owner

    def close(self) -> None:
        self._closed.set()
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._server.close()
        self._thread.join(timeout=5)
