"""The consumer's broker channel sends its commands through one Redis client.

Per message, a worker's main process records the delivery (kombu's unacked set) and later
acknowledges it, each through `Channel.conn_or_acquire`, which builds a new redis-py client
every time (`service.redis_options.reuse_one_client`). This consumer step makes the channel the
consumer takes its messages on reuse one client, from the moment the consumer starts and again
after every reconnect (which starts the consumer's steps anew on a new channel).
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from ..redis_options import reuse_one_client


class OneClientPerChannel(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: the task consumer's channel reuses one Redis client."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, parent: Any) -> None:
        consumer = getattr(parent, "task_consumer", None)
        if consumer is not None:
            reuse_one_client(consumer.channel)
