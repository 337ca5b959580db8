"""The SIGKILL test with RabbitMQ as the broker, when one answers on 127.0.0.1:5672.

RabbitMQ is the usual broker for work that must never be lost: a consumer's unacknowledged
messages go back to the queue the moment its connection drops, with no visibility timeout.
The result backend and the counting lists stay on a local Redis. The test purges the five
queues before and after, since the server is shared with whatever else uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults import Stack, kill_workers_while_tasks_flow
from harness.rabbitmq import AMQP_URL, rabbitmq_unavailable


@pytest.fixture
def rabbit_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack whose broker is the local RabbitMQ; the queues are purged before and after."""
    reason = rabbitmq_unavailable()
    if reason:
        pytest.skip(reason)
    stack = Stack.start(tmp_path, broker_url=AMQP_URL)
    stack.celery.control.purge()
    try:
        yield stack
    finally:
        stack.close()
        stack.celery.control.purge()


def test_sigkilled_workers_lose_no_task_with_rabbitmq(
    rabbit_stack: Stack, record_property: pytest.RecordProperty
) -> None:
    run = kill_workers_while_tasks_flow(rabbit_stack, total=100, kills=4)
    record_property("summary", run.summary())
    print(f"RabbitMQ: {run.summary()}")
    assert run.kills >= 2, f"the work finished before enough kills: {run.summary()}"
