"""Results never pile up: a stored result expires, and a task that stores none leaves no key.

The worker runs with FLASK_CELERY__RESULT_EXPIRES=2, so a stored result's key in the result
backend (`celery-task-meta-<id>`) must carry a TTL of at most 2 s and then be gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults import Stack
from harness.processes import wait_until

EXPIRES = 2


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A Redis, a database and one worker whose results expire after 2 s."""
    s = Stack.start(tmp_path, env={"FLASK_CELERY__RESULT_EXPIRES": str(EXPIRES)})
    s.worker("w1")
    yield s
    s.close()


def meta_key(task_id: str) -> str:
    return f"celery-task-meta-{task_id}"


def test_a_stored_result_expires_and_its_key_is_gone(stack: Stack) -> None:
    result = stack.celery.send_task("tests.sleep", args=(0,), queue="default")
    assert result.get(timeout=20) >= 0
    backend = stack.results()
    ttl = backend.pttl(meta_key(result.id)) / 1000
    assert 0 < ttl <= EXPIRES, ttl
    wait_until(
        lambda: not backend.exists(meta_key(result.id)),
        timeout=EXPIRES + 3,
        what="the result key expired",
    )
    assert backend.keys("celery-task-meta-*") == []


def test_a_task_without_a_stored_result_leaves_no_key(stack: Stack) -> None:
    result = stack.celery.send_task("tests.effect", args=(1, 0), queue="default")
    stack.wait_for_effects(1, timeout=20)
    broker = stack.broker()
    wait_until(
        lambda: broker.llen("default") == 0 and broker.hlen("unacked") == 0,
        timeout=10,
        what="the message acknowledged",
    )
    backend = stack.results()
    assert not backend.exists(meta_key(result.id))
    assert backend.keys("celery-task-meta-*") == []
