"""Per-queue in-flight sets in Redis, so autoscaling sees work that is no longer in the list.

A message a worker has taken lives in Celery's unacked set, not in the queue's list, so the
list length alone under-counts work and KEDA would scale a busy group to zero. Each worker
therefore keeps, per queue, a sorted set `flask_celery:inflight:<queue>` in the broker's
database: members are task ids, scores the time by which the task must be over (its start plus
its hard time limit plus a margin, `service.budget.inflight_deadline`). An id is added when the
worker receives the message and removed when the task ends; the ids of a killed worker expire
by their score and are pruned by any worker of the queue (`service.worker.heartbeat`). KEDA's
Redis lists trigger counts a sorted set with ZCARD.

The receivers in `service.signals` call in: `task_received` in the worker's main process,
`task_postrun` in the pool child that ran the task; both reach Redis over their own connection.
Scaling data must never fail a task, so Redis errors are logged, not raised.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery, Task

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


def track(app: Celery, queue: str, task_id: str, deadline: float) -> None:
    """Count `task_id` as in flight on `queue` until it ends or `deadline` passes."""
    client = broker_client(app)
    if client is not None:
        # one command on the main process' path; expired entries are the heartbeat's (`prune`)
        client.zadd(inflight_key(queue), {task_id: deadline})


def untrack(app: Celery, queue: str, task_id: str) -> None:
    """Stop counting `task_id` on `queue`."""
    client = broker_client(app)
    if client is not None:
        client.zrem(inflight_key(queue), task_id)


def prune(app: Celery, queues: list[str]) -> None:
    """Drop entries whose deadline has passed (their worker died with them)."""
    client = broker_client(app)
    if client is None or not queues:
        return
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zremrangebyscore(inflight_key(queue), "-inf", time.time())
    pipe.execute()


def deadline_of(request: Any, consumer: Any) -> float:
    """When a received task must be over: its start (its eta, if later) plus its hard limit."""
    eta = request.eta
    start = eta.timestamp() if eta is not None and hasattr(eta, "timestamp") else time.time()
    message_limit = (getattr(request, "time_limits", None) or (None, None))[0]  # (hard, soft)
    hard = budget.hard_limit(
        message_limit,
        request.task.time_limit,
        getattr(getattr(consumer, "controller", None), "time_limit", None),
        request.task.app.conf.task_time_limit,
    )
    return budget.inflight_deadline(start, hard)


def on_received(request: Any, consumer: Any) -> None:
    """A worker took a message: count its task until it ends."""
    queue = _queue_of(getattr(request, "delivery_info", None))
    if request is None or queue is None:
        return
    try:
        track(request.task.app, queue, request.id, deadline_of(request, consumer))
    except redis.RedisError as exc:
        log.warning("could not record in-flight task %s: %s", request.id, exc)


def on_finished(task: Task | None, task_id: str | None) -> None:
    """A task ended (in the pool child that ran it): stop counting it."""
    queue = _queue_of(getattr(task.request, "delivery_info", None)) if task else None
    if task is None or queue is None or task_id is None:
        return
    try:
        untrack(task.app, queue, task_id)
    except redis.RedisError as exc:
        log.warning("could not clear in-flight task %s: %s", task_id, exc)


def on_revoked(task: Task | None, request: Any) -> None:
    """A received task was revoked before it ran: stop counting it.

    `request` is the message's context, whose `task` is only the task's name: the app comes
    from `task`, the signal's sender.
    """
    queue = _queue_of(getattr(request, "delivery_info", None))
    if task is None or request is None or queue is None:
        return
    try:
        untrack(task.app, queue, request.id)
    except redis.RedisError as exc:
        log.warning("could not clear revoked task %s: %s", request.id, exc)
