"""The pickup probe's one action, shared by the plain and the project's tasks: note the time
the task body began, in the benchmark's Redis. No project code here (`bench.bare_celery`)."""

from __future__ import annotations

import os
import time

import redis

#: The benchmark's Redis, where a started probe notes its start time.
BROKER_ENV = "BENCH_BROKER_URL"
_client: list[redis.Redis] = []


def note_start(key: str) -> None:
    """RPUSH the time the task body began to `key` (one client per process)."""
    now = time.time()
    if not _client:
        _client.append(redis.Redis.from_url(os.environ[BROKER_ENV]))
    _client[0].rpush(key, now)
