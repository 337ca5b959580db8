"""The worker's consumer channel and the publisher's channel reuse one Redis client.

kombu's Redis channel builds a redis-py client for every command outside its BRPOP loop; the
service makes each channel keep one (`service.redis_options.reuse_one_client`), through the
consumer step `OneClientPerChannel` in workers. Against a real redis-server: the step patches
the consumer's channel, and a message still goes the whole way through it (delivered, recorded
in kombu's unacked set, acknowledged, gone).
"""

from __future__ import annotations

from types import SimpleNamespace

from celery import Celery
from kombu import Connection, Consumer, Exchange, Producer, Queue

from harness.redis_server import RedisServer
from service.factory import create_app
from service.worker.channels import OneClientPerChannel


def test_the_consumer_step_makes_its_channel_reuse_one_client_and_messages_still_flow(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url(7)
    queue = Queue("one-client", Exchange("one-client"), routing_key="one-client")
    with Connection(url) as connection:
        channel = connection.channel()
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is not second  # kombu's own: a client per command

        received: list[bytes] = []
        consumer = Consumer(channel, [queue], callbacks=[lambda body, message: received.append(
            message)], accept=["json"])  # fmt: skip
        OneClientPerChannel(SimpleNamespace(), app=Celery()).start(
            SimpleNamespace(task_consumer=consumer)
        )
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second

        Producer(channel).publish({"n": 1}, exchange=queue.exchange, routing_key="one-client",
                                  declare=[queue], serializer="json")  # fmt: skip
        consumer.qos(prefetch_count=1)
        with consumer:
            connection.drain_events(timeout=5)
            assert len(received) == 1
            with channel.conn_or_acquire() as client:
                assert client.hlen(channel.unacked_key) == 1  # recorded through the one client
            received[0].ack()  # type: ignore[attr-defined]
            with channel.conn_or_acquire() as client:
                assert client.hlen(channel.unacked_key) == 0
                assert client.llen("one-client") == 0


def test_every_worker_of_the_app_runs_the_step() -> None:
    assert OneClientPerChannel in create_app().extensions["celery"].steps["consumer"]
