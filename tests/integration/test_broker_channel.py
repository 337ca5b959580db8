"""What a worker changes in its consumer channel, against a real redis-server and kombu.

The consumer step `ConsumerChannel` makes the channel reuse one Redis client
(`service.redis_options.reuse_one_client`) and keep the in-flight sets KEDA counts inside the
pipelines kombu sends anyway (`service.worker.inflight.track_in_pipelines`): an entry appears
with the delivery, and goes with its acknowledgement, its rejection or its return to the queue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection, Consumer, Exchange, Producer, Queue

from harness.redis_server import RedisServer
from service.factory import create_app
from service.worker.channels import ConsumerChannel
from service.worker.inflight import inflight_key

QUEUE = "one-client"
WORKER_LIMIT = 120


@pytest.fixture
def channel(redis_server: RedisServer) -> Iterator[tuple[Any, list[Any], redis.Redis]]:
    """A kombu channel on database 7, consuming QUEUE, after the step started on it; the
    messages it receives; a client of the same database."""
    url = redis_server.url(7)
    client = redis.Redis.from_url(url)
    client.flushdb()
    queue = Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)
    received: list[Any] = []
    with Connection(url) as connection:
        chan = connection.channel()
        consumer = Consumer(chan, [queue], callbacks=[lambda _, m: received.append(m)],
                            accept=["json"])  # fmt: skip
        parent = SimpleNamespace(task_consumer=consumer, app=Celery(),
                                 controller=SimpleNamespace(time_limit=WORKER_LIMIT))  # fmt: skip
        ConsumerChannel(parent, app=parent.app).start(parent)
        consumer.qos(prefetch_count=2)
        with consumer:
            chan.received = received
            chan.publish = lambda task_id: Producer(chan).publish(
                {}, exchange=queue.exchange, routing_key=QUEUE, declare=[queue],
                serializer="json", headers={"id": task_id, "task": "tests.sleep"},
            )  # fmt: skip
            yield chan, received, client


def deliver(chan: Any, received: list[Any], task_id: str) -> Any:
    chan.publish(task_id)
    chan.connection.client.drain_events(timeout=5)
    return received[-1]


def test_the_channel_reuses_one_client(channel: tuple[Any, list[Any], redis.Redis]) -> None:
    chan, _, _ = channel
    with chan.conn_or_acquire() as first, chan.conn_or_acquire() as second:
        assert first is second
    with Connection(chan.connection.client.as_uri()) as other:  # kombu's own, for contrast
        plain = other.channel()
        with plain.conn_or_acquire() as first, plain.conn_or_acquire() as second:
            assert first is not second


def test_an_entry_lives_from_the_delivery_to_the_acknowledgement(
    channel: tuple[Any, list[Any], redis.Redis],
) -> None:
    chan, received, client = channel
    before = time.time()
    message = deliver(chan, received, "task-1")
    assert client.hlen(chan.unacked_key) == 1
    entries = client.zrange(inflight_key(QUEUE), 0, -1, withscores=True)
    assert [member for member, _ in entries] == [b"task-1"]
    # the worker's hard limit, for a task the app does not know, plus the margin
    assert before + WORKER_LIMIT <= entries[0][1] <= time.time() + WORKER_LIMIT + 31
    message.ack()
    assert client.zcard(inflight_key(QUEUE)) == 0
    assert client.hlen(chan.unacked_key) == 0


def test_an_entry_goes_with_a_rejection_and_a_return_to_the_queue(
    channel: tuple[Any, list[Any], redis.Redis],
) -> None:
    chan, received, client = channel
    dropped = deliver(chan, received, "task-dropped")
    requeued = deliver(chan, received, "task-requeued")
    assert client.zcard(inflight_key(QUEUE)) == 2
    dropped.reject()
    assert client.zrange(inflight_key(QUEUE), 0, -1) == [b"task-requeued"]
    requeued.reject(requeue=True)
    assert client.zcard(inflight_key(QUEUE)) == 0
    assert client.llen(QUEUE) == 1  # back in its list, where KEDA counts it


def test_a_message_whose_deadline_cannot_be_read_is_delivered_without_an_entry(
    channel: tuple[Any, list[Any], redis.Redis],
) -> None:
    chan, received, client = channel
    Producer(chan).publish({}, exchange=QUEUE, routing_key=QUEUE, serializer="json",
                           headers={"id": "odd", "task": "tests.sleep",
                                    "timelimit": ["soon", None]})  # fmt: skip
    chan.connection.client.drain_events(timeout=5)
    assert received[-1].headers["id"] == "odd"
    assert client.hlen(chan.unacked_key) == 1  # delivered and recorded by kombu
    assert client.zcard(inflight_key(QUEUE)) == 0
    received[-1].ack()
    assert client.hlen(chan.unacked_key) == 0


def test_every_worker_of_the_app_runs_the_step() -> None:
    assert ConsumerChannel in create_app().extensions["celery"].steps["consumer"]
