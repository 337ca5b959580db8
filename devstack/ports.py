"""The loopback address every part of the stack listens on; whether a port there is free, and,
before the stack starts, which of its ports is taken and how the user can change it.
"""

from __future__ import annotations

import socket

from service.routing import WORKER_GROUPS

from .options import Options

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


def port_clash(options: Options, *, starting_redis: bool) -> str | None:
    """What to do about the first port the stack would listen on that is taken; None if none is.

    The message names the flag or the variable the user set the port with, or both for a default.
    Redis's port counts only when we start a Redis on a port the user chose; without one, it
    takes the next free port.
    """
    names = ["web_port", "smtp_port", "webhook_port"]
    names += [] if options.no_flower else ["flower_port"]
    names += ["redis_port"] if starting_redis and options.redis_port is not None else []
    for name in names:
        port = getattr(options, name)
        if not port_is_free(port):
            return f"port {port} is in use: {options.how_to_change(name)}"
    for port in metrics_ports(options.metrics_port):
        if not port_is_free(port):
            return f"port {port} is in use: {options.how_to_change('metrics_port')}"
    return None


def metrics_ports(first: int) -> list[int]:
    """The exporter's metrics port, then one per worker group, in `WORKER_GROUPS` order."""
    return list(range(first, first + 1 + len(WORKER_GROUPS)))
