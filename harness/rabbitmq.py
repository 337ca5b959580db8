"""The local RabbitMQ that the AMQP variants of the fault tests and the soak benchmark use."""

from __future__ import annotations

import socket

from kombu import Connection

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def rabbitmq_unavailable() -> str | None:
    """Why the RabbitMQ at AMQP_URL cannot be used, or None when it can."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError as exc:
        return f"no RabbitMQ on 127.0.0.1:5672 ({exc})"
    try:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"something listens on 127.0.0.1:5672 but {AMQP_URL} does not connect: {exc!r}"
    return None
