"""Per-queue in-flight sets in Redis, so autoscaling sees work that is no longer in the list.

A message a worker has taken lives in Celery's unacked set, not in the queue's list, so the
list length alone under-counts work and KEDA would scale a busy group to zero. Each worker
therefore keeps, per queue, a sorted set `flask_celery:inflight:<queue>` in the broker's
database: members are task ids, scores the time by which the task must be over (start plus its
hard time limit plus a margin). An id is added when the worker receives the message and removed
when the task ends; the ids of a killed worker expire by their score and are pruned by any
worker of the queue. KEDA's Redis lists trigger counts a sorted set with ZCARD.

`task_received` fires in the worker's main process, `task_postrun` in the pool child that ran
the task; both reach Redis over their own connection.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery
from celery.signals import task_postrun, task_received, task_revoked

KEY_PREFIX = "flask_celery:inflight:"
#: Seconds added to a task's hard time limit before its entry counts as stale.
MARGIN = 30

log = logging.getLogger(__name__)
_clients: dict[str, redis.Redis] = {}


def inflight_key(queue: str) -> str:
    """The sorted set that holds `queue`'s in-flight task ids."""
    return f"{KEY_PREFIX}{queue}"


def _client(app: Celery) -> redis.Redis | None:
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return None  # other brokers (RabbitMQ) count unacked messages themselves
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    return _clients[url]


def _queue_of(delivery_info: dict[str, Any] | None) -> str | None:
    info = delivery_info or {}
    return info.get("routing_key") or info.get("queue") or None


def track(app: Celery, queue: str, task_id: str, deadline: float) -> None:
    """Count `task_id` as in flight on `queue` until it ends or `deadline` passes."""
    client = _client(app)
    if client is None:
        return
    key = inflight_key(queue)
    pipe = client.pipeline(transaction=False)
    pipe.zadd(key, {task_id: deadline})
    pipe.zremrangebyscore(key, "-inf", time.time())
    pipe.execute()


def untrack(app: Celery, queue: str, task_id: str) -> None:
    client = _client(app)
    if client is not None:
        client.zrem(inflight_key(queue), task_id)


def prune(app: Celery, queues: list[str]) -> None:
    """Drop entries whose deadline has passed (their worker died with them)."""
    client = _client(app)
    if client is None or not queues:
        return
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zremrangebyscore(inflight_key(queue), "-inf", time.time())
    pipe.execute()


def _hard_limit(request: Any, consumer: Any) -> float:
    limits = getattr(request, "time_limits", None) or (None, None)  # (hard, soft)
    worker_default = getattr(getattr(consumer, "controller", None), "time_limit", None)
    return float(
        limits[0]
        or request.task.time_limit
        or worker_default
        or request.task.app.conf.task_time_limit
        or 3600
    )


@task_received.connect
def _on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    queue = _queue_of(getattr(request, "delivery_info", None))
    if request is None or queue is None:
        return
    eta = request.eta
    start = eta.timestamp() if eta is not None and hasattr(eta, "timestamp") else time.time()
    try:
        track(request.task.app, queue, request.id, start + _hard_limit(request, sender) + MARGIN)
    except redis.RedisError as exc:  # scaling data must never fail a task
        log.warning("could not record in-flight task %s: %s", request.id, exc)


@task_postrun.connect
def _on_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    queue = _queue_of(getattr(sender.request, "delivery_info", None)) if sender else None
    if queue is None or task_id is None:
        return
    try:
        untrack(sender.app, queue, task_id)
    except redis.RedisError as exc:
        log.warning("could not clear in-flight task %s: %s", task_id, exc)


@task_revoked.connect
def _on_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    queue = _queue_of(getattr(request, "delivery_info", None))
    if request is not None and queue is not None:
        try:
            untrack(request.task.app, queue, request.id)
        except redis.RedisError as exc:
            log.warning("could not clear revoked task %s: %s", request.id, exc)
