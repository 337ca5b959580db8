"""Beat rides out Redis going away: hung (SIGSTOP), killed and restarted on the same port
with its data (AOF), then killed and restarted without any.

Two real beats run on the test's own Redis with a one-second entry and no worker, so every
tick stays in the `default` list with the process that sent it. After each outage both beats
are the same processes, the schedule is checked again (`LAST_TICK_KEY` moves past the
recovery) and ticks are published again, all of them by one beat: the leader keeps its lock
(same token) while Redis keeps it, and exactly one beat takes it again when Redis lost it.
Finally a worker, started while Redis is away the last time, runs the scheduled entry.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.faults import Stack
from harness.processes import wait_until
from harness.stack import BIN
from service.beat import LAST_TICK_KEY
from tests.support.beat import (
    LOCK,
    beat_env,
    origin,
    plan,
    published,
    start_beat,
    trial_that_ended,
)

#: Seconds Redis is away in each outage.
OUTAGE = 10.0
#: Longer than an outage: a lock that Redis kept is still this beat's when Redis is back.
LOCK_TIMEOUT, LOOP_INTERVAL = 25, 1
TASK, ENTRY = "periodic.expire_trials", "every-second"
WORKER = "outage@localhost"


def two_beats(stack: Stack) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """Two beats, once one of them leads and publishes; (leader, follower)."""
    a, b = (start_beat(stack, f"beat-{name}")[0] for name in ("a", "b"))
    broker = stack.broker()

    def leader() -> subprocess.Popen[bytes] | None:
        origins = {t.origin for t in published(broker, TASK)}
        return next((p for p in (a, b) for o in origins if o.startswith(origin(p))), None)

    lead = wait_until(leader, timeout=30, what=f"a beat publishing (logs in {stack.directory})")
    return lead, b if lead is a else a


def hang(stack: Stack) -> None:
    assert stack.redis.proc is not None
    os.kill(stack.redis.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE)
    finally:
        os.kill(stack.redis.proc.pid, signal.SIGCONT)


def kill_and_restart(
    stack: Stack, keep_data: bool = True, meanwhile: Callable[[], object] = lambda: None
) -> None:
    """SIGKILL Redis, call `meanwhile`, and start Redis again on the same port, with its
    append-only file or without it."""
    assert stack.redis.proc is not None
    stack.redis.proc.kill()
    stack.redis.proc.wait(10)
    if not keep_data:
        shutil.rmtree(stack.redis.directory / "appendonlydir")
    meanwhile()
    time.sleep(OUTAGE)
    stack.redis.start()


def ride_out(stack: Stack, what: str, outage: Callable[[], None], data_lost: bool = False) -> float:
    """Inflict `outage`, then wait until beat checked its schedule and published ticks;
    the seconds from Redis answering again to the first tick."""
    broker = stack.broker()
    before = 0 if data_lost else len(published(broker, TASK))
    outage()
    back, back_at = time.time(), time.monotonic()
    wait_until(
        lambda: len(published(broker, TASK)) > before,
        timeout=20,
        what=f"a tick published after {what} (logs in {stack.directory})",
    )
    first_tick = time.monotonic() - back_at
    wait_until(
        lambda: (
            float(broker.get(LAST_TICK_KEY) or 0) > back
            and len(published(broker, TASK)) > before + 1
        ),
        timeout=20,
        what=f"beat ticking after {what} (logs in {stack.directory})",
    )
    return first_tick


def test_beat_rides_out_redis_outages_with_one_leader_and_schedules_after(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    env = beat_env(ENTRY, TASK, LOCK_TIMEOUT, LOOP_INTERVAL)
    stack = Stack.start(tmp_path, appendonly=True, env=env)
    try:
        leader, follower = two_beats(stack)
        broker = stack.broker()
        token = broker.get(LOCK)
        assert token

        # Redis keeps the lock: the leader keeps it, with its token, and publishes alone
        after_hang = ride_out(stack, "a hung Redis", lambda: hang(stack))
        assert broker.get(LOCK) == token, "the leader lost its lock to a hung Redis"
        after_restart = ride_out(stack, "a Redis restart", lambda: kill_and_restart(stack))
        assert broker.get(LOCK) == token, "the leader lost its lock to a Redis restart"
        origins = {t.origin for t in published(broker, TASK)}
        assert all(o.startswith(origin(leader)) for o in origins), origins

        # Redis loses the lock, the schedule and the ticks: one beat takes the lock, stores the
        # schedule again and publishes alone. Meanwhile a worker boots, on a queue beat does
        # not use.
        worker = [str(BIN / "celery"), "-A", "service.make_celery", "worker",
                  "--queues", "webhooks", "--concurrency", "1", "--hostname", WORKER,
                  "--without-mingle", "--without-gossip"]  # fmt: skip
        after_empty_restart = ride_out(
            stack,
            "a Redis restart without its data",
            lambda: kill_and_restart(stack, False, lambda: stack.spawn("worker", worker)),
            data_lost=True,
        )
        assert broker.get(LOCK) not in (None, token)
        assert broker.exists(f"flask_celery:redbeat{ENTRY}")
        origins = {t.origin for t in published(broker, TASK)}
        assert len(origins) == 1, origins

        assert leader.poll() is None and follower.poll() is None

        # and a scheduled run does its work once the worker takes beat's queue
        user_id = trial_that_ended(stack, "late")
        wait_until(
            lambda: stack.celery.control.add_consumer(
                "default", destination=[WORKER], reply=True, timeout=1
            ),
            timeout=30,
            what=f"the worker consuming (logs in {stack.directory})",
        )
        wait_until(
            lambda: plan(stack, user_id) == "expired",
            timeout=30,
            what=f"a scheduled run after the outages (logs in {stack.directory})",
        )
        summary = (
            f"two beats, Redis away {OUTAGE:.0f}s three times; first tick after Redis answers: "
            f"hung {after_hang:.1f}s, restarted with AOF {after_restart:.1f}s (same leader, "
            f"same token), restarted empty {after_empty_restart:.1f}s (one beat took the lock); "
            "both beats the same processes, every tick from one beat"
        )
        record_property("summary", summary)
        print(summary)
    finally:
        stack.close()
