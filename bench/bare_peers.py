"""The same no-op workload for Dramatiq and Huey (RQ's: `bench.bare_rq`), on the Redis in
BENCH_BROKER_URL.

    dramatiq bench.bare_peers --processes 2 --threads 1 --queues default
    huey_consumer bench.bare_peers.huey --workers 2 --worker-type process

Each with its defaults otherwise (Dramatiq acknowledges after the actor, Huey takes a task off
its list before running it).
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from huey import RedisHuey

URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")

broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)
huey = RedisHuey("bench", url=URL, results=False)


@dramatiq.actor(queue_name="default", max_retries=0)
def dramatiq_noop(n: int) -> int:
    return n


@huey.task()
def huey_noop(n: int) -> int:
    return n
