"""The loopback relay the cluster tests reach web through (tests/support/e2e_relay.py), with local
sockets standing in for the port-forward's."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.e2e_relay import Relay


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A loopback server that sends back what it receives, then closes when the peer does."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()
    server.shutdown(socket.SHUT_RDWR)
    server.close()


def receive(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size and (chunk := conn.recv(65536)):
        data += chunk
    return data


def test_every_connection_gets_its_own_remote_and_every_byte_both_ways(
    echo: tuple[str, int],
) -> None:
    opened = []

    def connect() -> tuple[socket.socket, object]:
        remote = socket.create_connection(echo)
        opened.append(remote)
        return remote, None

    relay = Relay(connect)
    try:
        payload = bytes(range(256)) * 1000  # more than one read
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as conn:
                conn.sendall(payload)
                assert receive(conn, len(payload)) == payload
        assert len(opened) == 2
    finally:
        relay.close()


def test_a_connection_without_a_remote_is_closed() -> None:
    def refuse() -> tuple[socket.socket, object]:
        raise RuntimeError("no ready web pod")

    relay = Relay(refuse)
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as conn:
            assert conn.recv(1) == b""
    finally:
        relay.close()


def test_the_local_side_is_closed_when_the_remote_closes() -> None:
    left, right = socket.socketpair()
    relay = Relay(lambda: (left, None))
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as conn:
            conn.sendall(b"ping")
            assert receive(right, 4) == b"ping"
            right.close()
            assert conn.recv(1) == b""
    finally:
        relay.close()
