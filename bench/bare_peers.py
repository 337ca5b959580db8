"""The same no-op workload for RQ, Dramatiq and Huey, on the Redis in BENCH_BROKER_URL.

    rq worker-pool -u $BENCH_BROKER_URL -n 2 default          (jobs: bench.bare_peers.noop)
    dramatiq bench.bare_peers --processes 2 --threads 1 --queues default
    huey_consumer bench.bare_peers.huey --workers 2 --worker-type process

Each with its defaults otherwise (RQ forks a work horse per job, Dramatiq acknowledges after the
actor, Huey takes a task off its list before running it).
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


def noop(n: int) -> int:
    """RQ's job (RQ imports it by its dotted name)."""
    return n


@dramatiq.actor(queue_name="default", max_retries=0)
def dramatiq_noop(n: int) -> int:
    return n


@huey.task()
def huey_noop(n: int) -> int:
    return n
