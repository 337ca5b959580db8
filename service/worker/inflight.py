"""Per-queue in-flight sets in Redis, so autoscaling sees work that is no longer in the list.

A message a worker has taken lives in Celery's unacked set, not in the queue's list, so the
list length alone under-counts work and KEDA would scale a busy group to zero. Each worker
therefore keeps, per queue, a sorted set `flask_celery:inflight:<queue>` in the broker's
database: members are task ids, scores the time by which the task must be over (its start plus
its hard time limit plus a margin, `service.budget.inflight_deadline`). KEDA's Redis lists
trigger counts a sorted set with ZCARD.

The entries ride in the commands kombu's Redis transport sends anyway (`track_in_pipelines`,
installed on the consumer's channel by `service.worker.channels`): an id is added in the same
MULTI/EXEC that records the delivery in kombu's unacked set, and removed in the one that
acknowledges it, rejects it or puts it back in its queue. So an entry lives exactly as long as
the message is held by this worker, at no round trip of its own and no Redis command in the
pool processes. The ids of a killed worker expire by their score and are pruned by any worker
of the queue (`service.worker.heartbeat`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import redis
from celery import Celery

from .. import budget, redis_options

KEY_PREFIX = "flask_celery:inflight:"

log = logging.getLogger(__name__)
_clients: dict[str, redis.Redis] = {}


def inflight_key(queue: str) -> str:
    """The sorted set that holds `queue`'s in-flight task ids."""
    return f"{KEY_PREFIX}{queue}"


def broker_client(app: Celery) -> redis.Redis | None:
    """This process' client of the broker's Redis database; None when the broker is not Redis."""
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return None  # other brokers (RabbitMQ) count unacked messages themselves
    tls = app.conf.broker_use_ssl
    key = f"{url} {tls!r}"  # one client per URL and trust: apps in one process may differ
    if key not in _clients:
        _clients[key] = redis_options.client(url, tls, socket_connect_timeout=3, socket_timeout=5)
    return _clients[key]


def _queue_of(delivery_info: dict[str, Any] | None) -> str | None:
    info = delivery_info or {}
    return info.get("routing_key") or info.get("queue") or None


def prune(app: Celery, queues: list[str]) -> None:
    """Drop entries whose deadline has passed (their worker died with them)."""
    client = broker_client(app)
    if client is None or not queues:
        return
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zremrangebyscore(inflight_key(queue), "-inf", time.time())
    pipe.execute()


def deadline_of(headers: Mapping[str, Any], app: Celery, worker_limit: float | None) -> float:
    """When the task of a message with `headers` must be over: its start (its eta, if later)
    plus the hard limit it will run under (`service.budget.hard_limit`)."""
    start = time.time()
    eta = headers.get("eta")
    if isinstance(eta, str):
        try:
            start = max(start, datetime.fromisoformat(eta).timestamp())
        except ValueError:
            pass  # Celery would refuse the message; its entry counts from now
    message_limit = (headers.get("timelimit") or (None, None))[0]  # (hard, soft)
    task = app.tasks.get(str(headers.get("task")))
    task_limit = task.time_limit if task is not None else None
    hard = budget.hard_limit(message_limit, task_limit, worker_limit, app.conf.task_time_limit)
    return budget.inflight_deadline(start, hard)


def track_in_pipelines(qos: Any, deadline: Callable[[Mapping[str, Any]], float]) -> None:
    """Make kombu's Redis `qos` (a channel's delivery bookkeeping) add a message's in-flight
    entry in the pipeline that records its delivery, and remove it in every pipeline that
    takes the delivery off its unacked set (acknowledged, rejected, restored).

    `deadline` gives an entry's score from the message's headers. Another transport's QoS, or
    one already tracking, is left alone.
    """
    if getattr(qos, _TRACKING, False) or not hasattr(qos, "_remove_from_indices"):
        return
    append, pipe_or_acquire, remove = qos.append, qos.pipe_or_acquire, qos._remove_from_indices
    adding: list[tuple[str, str, float]] = []

    @contextmanager
    def pipe_with_entries(pipe: Any = None, client: Any = None) -> Iterator[Any]:
        with pipe_or_acquire(pipe, client) as opened:
            while adding:
                key, task_id, score = adding.pop()
                opened.zadd(key, {task_id: score})
            yield opened

    def append_tracked(message: Any, delivery_tag: Any) -> None:
        try:
            entry = _entry_of(message)
            if entry is not None:
                adding.append((*entry, deadline(message.headers)))
        except Exception as exc:  # noqa: BLE001 - scaling data never stops a delivery
            log.warning("not counting message %s as in flight: %r", delivery_tag, exc)
        append(message, delivery_tag)  # its pipeline comes from `pipe_with_entries`

    def remove_tracked(delivery_tag: Any, pipe: Any = None) -> Any:
        pipeline = remove(delivery_tag, pipe)
        message = qos._delivered.get(delivery_tag)
        entry = _entry_of(message) if message is not None else None
        if entry is not None:
            pipeline.zrem(*entry)
        return pipeline

    qos.pipe_or_acquire = pipe_with_entries
    qos.append = append_tracked
    qos._remove_from_indices = remove_tracked
    setattr(qos, _TRACKING, True)


_TRACKING = "_flask_celery_tracks_inflight"


def _entry_of(message: Any) -> tuple[str, str] | None:
    """The in-flight set and member of a delivered task message; None for anything else."""
    headers = getattr(message, "headers", None) or {}
    queue = _queue_of(getattr(message, "delivery_info", None))
    task_id = headers.get("id")
    if queue is None or not isinstance(task_id, str):
        return None
    return inflight_key(queue), task_id
