"""Connection loss: close the lost broker connection's channels before Celery collects it.

With the Redis transport, a worker whose broker goes away can die with `Unrecoverable error:
AttributeError("'NoneType' object has no attribute 'hostname'")` instead of reconnecting (seen
with Celery 5.7 and kombu 5.7; the failure of celery/kombu#582, by another path). Celery's
connection-loss handler collects the connection (`kombu.Connection.collect`), then closes it.
`collect` closes each channel, but a channel's close stops at the first dead socket: the default
channel's at the read of its outstanding BRPOP, before the channel counts as closed; the
remote-control channel's at deleting its fanout binding, which also ends `collect`'s loop over
the channels left. `collect` then detaches the transport from the connection, so the close that
follows finishes the default channel's close with no broker to ask: restoring its unacknowledged
messages builds a connection pool from the detached `transport.client`, and the AttributeError,
being no connection error, stops the worker. It takes Redis going away while a task is
unacknowledged and the consumer waits on BRPOP, and another socket (the remote-control
subscription, a timer's command) seeing it first.

`ReleaseChannels` has the consumer close every channel of the lost connection first, trying a
close again when it stopped at a dead socket, while the transport still knows its broker. What a
close cannot do without Redis is left as Celery leaves it: unacknowledged messages wait in Redis'
unacked set until the visibility timeout hands them out again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import bootsteps
from celery.utils.threads import bound_open_broker_sockets
from celery.worker.consumer.consumer import COLLECT_SOCKET_TIMEOUT

#: Closes per channel: a close that stopped at its dead BRPOP read gets through the second time.
CLOSE_ATTEMPTS = 2

log = logging.getLogger(__name__)


def release_channels(connection: Any) -> None:
    """Close every channel of a lost broker connection, as far as each close gets without Redis.

    Best effort: it runs on the way to a reconnect, so it never raises. A transport without
    channels of its own (py-amqp) is left to Celery.
    """
    transport = getattr(connection, "_transport", None)  # `.transport` would create one
    channels = list(getattr(transport, "channels", None) or ())
    if not channels:
        return
    # a close reads from sockets that are already open: never wait on a silent peer
    bound_open_broker_sockets(connection, COLLECT_SOCKET_TIMEOUT)
    for channel in channels:
        for _ in range(CLOSE_ATTEMPTS):
            if getattr(channel, "closed", True):
                break
            try:
                channel.close()
            except Exception as exc:  # noqa: BLE001 - the broker is gone; the worker reconnects
                log.debug("closing a channel of the lost broker connection: %r", exc)


class ReleaseChannels(bootsteps.Step):  # type: ignore[misc]
    """Consumer step: when the broker connection is lost, close its channels before Celery
    collects it (see the module's docstring)."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        collect: Callable[[BaseException], None] = parent.on_connection_error_after_connected

        def release_then_collect(exc: BaseException) -> None:
            release_channels(parent.connection)
            collect(exc)

        # Celery calls nothing between noticing the loss and collecting the connection, so this
        # consumer's handler is wrapped
        parent.on_connection_error_after_connected = release_then_collect
