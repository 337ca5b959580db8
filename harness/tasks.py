"""Celery tasks that exist only for tests, loaded into a worker with `stack.INCLUDE_TEST_TASKS`.

They run on the `default` queue (the routing table's default) and let a test hold a worker
busy for a known time, count how often work ran against how often its effect happened, or
fail permanently or transiently on purpose; others hold a task at a known point (before a
progress report, a sub-task's publish, the final COMMIT) while a test takes Redis or the
database away.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any
from uuid import uuid4

import redis
from celery import current_app as current_celery
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_prerun

from service.data.db import db
from service.data.models import User
from service.reliability.retry import PermanentError, TransientError
from service.reliability.task import job_task

#: Redis lists (on the broker's Redis, else the result backend's): one entry per delivery of a
#: `tests.effect` message to a pool process, and one per run of its body.
DELIVERIES = "tests:deliveries"
EXECUTIONS = "tests:executions"

_counters: dict[tuple[int, str], redis.Redis] = {}


@shared_task(name="tests.sleep", ignore_result=False)
def sleep(seconds: float) -> float:
    """Hold a pool process for `seconds`; return how long it slept."""
    started = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - started


def counter_url(conf: Any) -> str:
    """Where the counting lists live: the broker when it is Redis, else the result backend."""
    broker = str(conf.broker_url)
    return broker if broker.startswith("redis") else str(conf.result_backend)


def _count(name: str, n: int | str) -> None:
    """Append `n` to the counting list `name`; best effort, so that a test which takes Redis
    away does not turn a count into a task failure (the counts are then lower bounds)."""
    # one client per process: prefork children must not share a socket with their parent
    url = counter_url(current_celery.conf)
    key = (os.getpid(), url)
    if key not in _counters:
        _counters[key] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        _counters[key].rpush(name, n)
    except redis.RedisError:
        pass


@job_task("tests.effect", key=lambda n, hold=0: f"effect:{n}", store_result=False)
def effect(n: int, hold: float = 0) -> int:
    """Count the run, hold a pool process `hold` seconds, then create one User row for `n`.

    The row's email is unique per run, not per `n`: a second effect for the same `n` shows up
    as a second row named ``effect <n>``, instead of failing on the email's unique constraint
    and hiding which of the two (ledger or constraint) kept it out.
    """
    _count(EXECUTIONS, n)
    time.sleep(hold)
    db.session.add(User(email=f"effect-{n}-{uuid4().hex[:12]}@example.com", name=f"effect {n}"))
    return n


@job_task("tests.fail", store_result=False)
def fail(n: int) -> None:
    """Fail permanently: a dead letter at once, no retry."""
    raise PermanentError(f"tests.fail {n}")


@job_task("tests.flaky", store_result=False)
def flaky(n: int) -> int:
    """Fail transiently on the first attempt, succeed on the retry."""
    if not current_celery.current_task.request.retries:
        raise TransientError(f"tests.flaky {n}: first attempt")
    return n


@job_task("tests.progress", key=lambda n, hold=0: f"effect:{n}", store_result=False)
def progress(n: int, hold: float = 0) -> int:
    """Count the run, hold `hold` seconds, report progress (the result store), then create the
    User row of `n` (as `tests.effect`)."""
    _count(EXECUTIONS, n)
    time.sleep(hold)
    current_celery.current_task.update_state(state="PROGRESS", meta={"n": n})
    db.session.add(User(email=f"effect-{n}-{uuid4().hex[:12]}@example.com", name=f"effect {n}"))
    return n


@job_task("tests.fan_out", key=lambda n, children, hold=0: f"fan-out:{n}", store_result=False)
def fan_out(n: int, children: list[int], hold: float = 0) -> int:
    """Count the run, hold `hold` seconds, then publish `tests.effect` for every child (as the
    periodic fan-out publishes its reminders)."""
    _count(EXECUTIONS, n)
    time.sleep(hold)
    for child in children:
        effect.delay(child)
    return len(children)


@job_task("tests.row_then_hold", store_result=False)
def row_then_hold(n: int, hold: float = 0) -> int:
    """Insert the User row of `n` (flushed: the transaction is open), count the run, then hold
    `hold` seconds before returning: whatever happens meanwhile hits the final COMMIT."""
    db.session.add(User(email=f"effect-{n}-{uuid4().hex[:12]}@example.com", name=f"effect {n}"))
    db.session.flush()
    _count(EXECUTIONS, n)
    time.sleep(hold)
    return n


@job_task("tests.retry_then_hang", store_result=False)
def retry_then_hang(n: int, retries: int, hold: float) -> None:
    """Fail transiently `retries` times, then hold `hold` seconds, through the soft time limit:
    a run the hard time limit ends."""
    if current_celery.current_task.request.retries < retries:
        raise TransientError(f"tests.retry_then_hang {n}: attempt to retry")
    try:
        time.sleep(hold)
    except SoftTimeLimitExceeded:
        time.sleep(hold)


@job_task("tests.fail_loudly", store_result=False)
def fail_loudly(n: int, url: str) -> None:
    """Fail permanently, quoting `url` (with its password) in the error."""
    raise PermanentError(f"tests.fail_loudly {n}: could not use {url}")


def _broken_hook(n: int) -> None:
    db.session.add(User(email=f"hook-{n}-{uuid4().hex[:12]}@example.com", name=f"hook {n}"))
    db.session.flush()
    raise RuntimeError(f"the dead-letter hook of {n} failed")


@job_task("tests.fail_with_broken_hook", store_result=False, on_dead_letter=_broken_hook)
def fail_with_broken_hook(n: int) -> None:
    """Fail permanently; its `on_dead_letter` hook writes a row, then fails."""
    raise PermanentError(f"tests.fail_with_broken_hook {n}")


#: Redis list (as the counting lists): one "<n> <pid> <peak RSS KiB>" per finished `tests.child`.
CHILDREN = "tests:children"
#: What `tests.child` keeps allocated in its pool process, as a leak would.
_leaked: list[bytes] = []


@shared_task(name="tests.child")
def child(n: int, grow_to_kib: int = 0, hold: float = 0) -> None:
    """Allocate in this pool process, and keep for good as a leak would, until its peak resident
    memory exceeds `grow_to_kib` (what Celery's --max-memory-per-child compares with its cap
    once a task has finished); hold `hold` seconds; then record which process ran `n`."""
    while resource.getrusage(resource.RUSAGE_SELF).ru_maxrss <= grow_to_kib:
        _leaked.append(b"\x01" * (8 << 20))  # written, so resident
    time.sleep(hold)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _count(CHILDREN, f"{n} {os.getpid()} {peak_kib}")


@task_prerun.connect
def _count_delivery(sender: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    # task_prerun runs in the pool process, before the ledger lookup: duplicates count here
    if getattr(sender, "name", None) == "tests.effect":
        _count(DELIVERIES, args[0] if args else (kwargs or {})["n"])
