"""Live workers in Redis: one short-lived key per worker node, naming its queues and pool size.

Each worker's heartbeat (`service.worker.heartbeat`) writes `flask_celery:worker:<node name>`
in the broker's database, JSON `{"queues": [...], "concurrency": N}`, with an expiry of a few
heartbeats; the step removes the key when the worker stops consuming. A worker that died
without stopping disappears when its key expires. The broker exporter reads the keys with SCAN,
so counting workers needs neither Celery events nor a broadcast `inspect`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis
from celery import Celery

from .inflight import broker_client

KEY_PREFIX = "flask_celery:worker:"


@dataclass(frozen=True)
class LiveWorker:
    """A worker node with a recent heartbeat: the queues it consumes and its pool processes."""

    node: str
    queues: tuple[str, ...]
    concurrency: int


def worker_key(node: str) -> str:
    """The key that says `node` is alive."""
    return f"{KEY_PREFIX}{node}"


def announce(app: Celery, node: str, queues: list[str], concurrency: int, ttl: float) -> None:
    """Say that `node` consumes `queues` with `concurrency` processes, for the next `ttl` s."""
    client = broker_client(app)
    if client is not None:
        value = json.dumps({"queues": queues, "concurrency": concurrency})
        client.set(worker_key(node), value, px=int(ttl * 1000))


def withdraw(app: Celery, node: str) -> None:
    """Say that `node` no longer consumes."""
    client = broker_client(app)
    if client is not None:
        client.delete(worker_key(node))


def parse(key: str | bytes, raw: str | bytes | None) -> LiveWorker | None:
    """The worker a registry key and its value describe; None for an expired or foreign value."""
    node = (key.decode() if isinstance(key, bytes) else key).removeprefix(KEY_PREFIX)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        queues = tuple(str(q) for q in value["queues"])
        concurrency = int(value["concurrency"])
    except (ValueError, TypeError, KeyError):
        return None
    return LiveWorker(node, queues, concurrency)


def live_workers(client: redis.Redis) -> list[LiveWorker]:
    """Every worker whose key has not expired (SCAN: never blocks Redis like KEYS)."""
    keys = list(client.scan_iter(match=f"{KEY_PREFIX}*", count=500))
    if not keys:
        return []
    found = (parse(key, raw) for key, raw in zip(keys, client.mget(keys), strict=True))
    return [worker for worker in found if worker is not None]
