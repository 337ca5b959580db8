"""The project's own infrastructure failing mid-task: a retry, then success, never a dead letter.

Each test starts tasks that hold a pool process at a known point, takes Redis or PostgreSQL away
for a few seconds while they hold, and brings it back on the same port with the same data
(Redis with its append-only file, PostgreSQL with its data directory). What then fails:
- Redis: a progress report (`update_state`, the result store) and a sub-task's publish (the
  fan-out); the retry cannot be published either, so the message is requeued, comes back
  after the visibility timeout and runs again.
- PostgreSQL: the task's own query (the body) and the final COMMIT of a row already flushed.
Every task's effect then exists exactly once, nothing is dead-lettered (in the table or in
Redis), and the held tasks ran at least twice: once into the outage, once after it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from harness.faults import Stack
from harness.postgres import Database, Postgres, postgres_bindir
from harness.processes import wait_until
from harness.tasks import EXECUTIONS
from service.data.db import db
from service.data.models import DeadLetter
from service.reliability.dead_letter import FALLBACK_KEY

#: Seconds before Redis hands an unacknowledged message out again: past the hard time limit
#: (contract 3), short enough for a test. Retries come quickly and often enough to outlast an
#: outage of a few seconds.
OUTAGE_ENV = {
    "FLASK_CELERY__TASK_TIME_LIMIT": "6",
    "FLASK_CELERY__TASK_SOFT_TIME_LIMIT": "5",
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout": "7",
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__unacked_restore_interval": "1",
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__unacked_restore_throttle": "1",
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__unacked_mutex_expire": "5",
    "FLASK_RETRY_MAX_RETRIES": "10",
    "FLASK_RETRY_BACKOFF_BASE": "0.5",
    "FLASK_RETRY_BACKOFF_MAX": "2",
}
#: Seconds the held tasks wait before the step that meets the outage.
HOLD = 1.5
#: The same for the PostgreSQL case (under the 5 s soft time limit).
PG_HOLD = 3.0
#: Seconds the dependency stays away.
OUTAGE = 3.0


def runs(stack: Stack) -> collections.Counter[int]:
    """How often each held task's body started (its counting list entries)."""
    return collections.Counter(int(n) for n in stack.counters().lrange(EXECUTIONS, 0, -1))


def dead_letters(stack: Stack) -> list[str]:
    with stack.app.app_context():
        names = list(db.session.scalars(sa.select(DeadLetter.task_name)))
        db.session.remove()
    return names


def hold_in_flight(stack: Stack, numbers: set[int]) -> None:
    wait_until(lambda: set(runs(stack)) >= numbers, timeout=30, what=f"tasks {numbers} started")


def effects_of(stack: Stack, numbers: set[int]) -> dict[int, int]:
    """Once every n in `numbers` has its effect: how many each has."""
    return wait_until(
        lambda: (seen := stack.effects()) and set(seen) >= numbers and seen,
        timeout=45,
        interval=0.25,
        what=f"effects {numbers} (logs in {stack.directory})",
    )


@dataclass
class Outages:
    stack: Stack
    postgres: Postgres | None


@pytest.fixture(scope="module")
def outages(tmp_path_factory: pytest.TempPathFactory, database: Database) -> Iterator[Outages]:
    """One worker on the database and a Redis that keeps its data across a restart. On
    PostgreSQL a server of the module's own, which a test stops: the worker's session server
    serves other stacks."""
    directory = tmp_path_factory.mktemp("outages")
    postgres = Postgres(postgres_bindir()).start() if database.name == "postgresql" else None
    url = postgres.url if postgres else database.fresh_url(directory)
    stack = Stack.start(directory, appendonly=True, env=OUTAGE_ENV, database_url=url)
    try:
        stack.worker("w", concurrency=2)
        yield Outages(stack, postgres)
    finally:
        stack.close()
        if postgres:
            postgres.stop()


@pytest.mark.databases("sqlite", "postgresql")
def test_redis_away_during_a_progress_report_and_a_sub_task_publish(
    outages: Outages, record_property: pytest.RecordProperty
) -> None:
    stack = outages.stack
    stack.celery.send_task("tests.progress", args=(1, HOLD))
    stack.celery.send_task("tests.fan_out", args=(2, [20, 21], HOLD))
    hold_in_flight(stack, {1, 2})
    stack.redis.stop()  # graceful: the append-only file keeps the unacknowledged messages
    time.sleep(OUTAGE)
    stack.redis.start()
    effects = effects_of(stack, {1, 20, 21})
    assert {n: effects[n] for n in (1, 20, 21)} == {1: 1, 20: 1, 21: 1}
    assert dead_letters(stack) == []
    assert stack.broker().llen(FALLBACK_KEY) == 0
    held = runs(stack)
    assert held[1] >= 2 and held[2] >= 2, held  # retried after the outage, not just late
    wait_until(lambda: stack.pending() == 0, timeout=20, what="every message acknowledged")
    record_property(
        "summary",
        f"Redis stopped {OUTAGE:.0f}s: progress task ran {held[1]}x, fan-out ran {held[2]}x; "
        "3 of 3 effects once, 0 dead letters (table and Redis fallback)",
    )


@pytest.mark.databases("postgresql")
def test_postgresql_away_during_a_task_body_and_at_the_final_commit(
    outages: Outages, record_property: pytest.RecordProperty
) -> None:
    stack, postgres = outages.stack, outages.postgres
    assert postgres is not None
    # held longer than the Redis cases: stopping PostgreSQL (pg_ctl -w) takes a while on a busy
    # machine, and the insert and the COMMIT must come after it
    stack.celery.send_task("tests.effect", args=(31, PG_HOLD))  # its insert meets the outage
    stack.celery.send_task("tests.row_then_hold", args=(32, PG_HOLD))  # its COMMIT does
    hold_in_flight(stack, {31, 32})
    postgres.halt()
    time.sleep(OUTAGE)
    postgres.start()
    effects = effects_of(stack, {31, 32})
    assert {n: effects[n] for n in (31, 32)} == {31: 1, 32: 1}
    assert dead_letters(stack) == []
    assert stack.broker().llen(FALLBACK_KEY) == 0
    held = runs(stack)
    assert held[31] >= 2 and held[32] >= 2, held
    record_property(
        "summary",
        f"PostgreSQL stopped {OUTAGE:.0f}s: body task ran {held[31]}x, COMMIT task ran "
        f"{held[32]}x; 2 of 2 effects once, 0 dead letters",
    )
