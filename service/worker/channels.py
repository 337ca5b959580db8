"""What a worker changes in the broker channel it consumes from (the Redis transport's).

Per message, a worker's main process records the delivery in kombu's unacked set and later
acknowledges it, each in one MULTI/EXEC pipeline. The consumer step `ConsumerChannel`, when the
consumer starts and again after every reconnect (which starts the consumer's steps anew on a new
channel), makes that channel:

- send its commands through one Redis client instead of building one per command
  (`service.redis_options.reuse_one_client`);
- carry the worker's in-flight entries in those same pipelines
  (`service.worker.inflight.track_in_pipelines`): no round trip of their own.

A channel of another transport (RabbitMQ) is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import bootsteps

from ..redis_options import reuse_one_client
from . import inflight


class ConsumerChannel(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: the task consumer's channel reuses one Redis client and keeps the
    in-flight sets in kombu's own pipelines."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, parent: Any) -> None:
        consumer = getattr(parent, "task_consumer", None)
        if consumer is None:
            return
        channel = consumer.channel
        reuse_one_client(channel)
        worker_limit = getattr(getattr(parent, "controller", None), "time_limit", None)

        def deadline(headers: Mapping[str, Any]) -> float:
            return inflight.deadline_of(headers, parent.app, worker_limit)

        qos = getattr(channel, "qos", None)  # kombu's virtual transports; py-amqp has none
        if qos is not None:
            inflight.track_in_pipelines(qos, deadline)
