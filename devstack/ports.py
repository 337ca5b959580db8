"""The loopback address every part of the stack listens on, and whether a port there is free."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:`port`."""
    with socket.socket() as s:
        # As servers bind: a closed server's connections in TIME_WAIT do not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True
