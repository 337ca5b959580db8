"""The fault-injection tests' pieces: an isolated stack, killing its workers, counting outcomes.

Each test builds its own `Stack` (a redis-server, a migrated SQLite database and the
environment its processes get), so the session workers of tests/integration/conftest.py never
take its messages and every count belongs to that test alone. Outcomes are counted where they land:
`tests.effect` rows in the database, keys in the ledger, entries in the counting lists.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flask_migrate
import redis
import sqlalchemy as sa
from flask import Flask
from kombu import Connection

from harness.processes import stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import (
    INCLUDE_TEST_TASKS,
    spawn,
    stack_environment,
    stack_flask_app,
    start_worker,
)
from harness.tasks import DELIVERIES, EXECUTIONS
from service.data.db import db
from service.data.models import LedgerEntry, User

#: Seconds after which Redis hands an unacknowledged message to another worker, here.
VISIBILITY_TIMEOUT = 10

#: A worker group that gets a dead worker's messages back within seconds, not hours: hard time
#: limit 5 s < visibility timeout 10 s (contract 3), and the abandoned-message sweep every
#: second instead of kombu's default of every 10th 10-second tick. A worker killed while it
#: holds the sweep's mutex would block every other sweep for `unacked_mutex_expire` (300 s by
#: default), so that is short too.
FAST_RECOVERY = {
    "FLASK_CELERY__TASK_TIME_LIMIT": "5",
    "FLASK_CELERY__TASK_SOFT_TIME_LIMIT": "4",
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout": str(VISIBILITY_TIMEOUT),
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__unacked_restore_interval": "1",
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__unacked_restore_throttle": "1",
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__unacked_mutex_expire": "5",
}


@dataclass
class Stack:
    """A redis-server, a migrated SQLite database, and the workers started on them.

    Everything lives under `directory`; `close` stops every process this stack started.
    """

    directory: Path
    redis: RedisServer
    env: dict[str, str]
    app: Flask
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        directory: Path,
        appendonly: bool = False,
        env: dict[str, str] | None = None,
        broker_url: str | None = None,
    ) -> Stack:
        """Start the Redis (broker and result backend, unless `broker_url` names another
        broker) and migrate the database; `env` adds to every process' environment."""
        server = RedisServer(directory / "redis", appendonly=appendonly).start()
        (directory / "prometheus").mkdir(parents=True, exist_ok=True)
        full_env = stack_environment(
            directory,
            broker_url or server.url(0),
            server.url(1),
            {
                "FLASK_WORKER_HEARTBEAT_FILE": str(directory / "heartbeat"),
                "PROMETHEUS_MULTIPROC_DIR": str(directory / "prometheus"),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
        )
        app = stack_flask_app(full_env)
        with app.app_context():
            flask_migrate.upgrade()
        return cls(directory, server, full_env, app)

    @property
    def celery(self) -> Any:
        return self.app.extensions["celery"]

    def broker(self) -> redis.Redis:
        """A client for the broker's Redis database (queues, unacked messages, counters)."""
        return redis.Redis.from_url(self.redis.url(0))

    def results(self) -> redis.Redis:
        """A client for the result backend's Redis database."""
        return redis.Redis.from_url(self.redis.url(1))

    def counters(self) -> redis.Redis:
        """The Redis holding the `tests.effect` counting lists (see `harness.tasks`)."""
        return (
            self.broker()
            if self.env["FLASK_CELERY__BROKER_URL"].startswith("redis")
            else (self.results())
        )

    def worker(
        self,
        name: str,
        queues: tuple[str, ...] = ("default",),
        concurrency: int = 2,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A real worker with the probe tasks, ready when this returns; log `<name>.log`."""
        proc, _ = start_worker(
            {**self.env, **(env or {})},
            queues,
            self.directory / f"{name}.log",
            concurrency=concurrency,
            extra=INCLUDE_TEST_TASKS,
        )
        self.procs.append(proc)
        return proc

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Any:
        """Start any process of the stack (beat, for instance); log `<name>.log`."""
        proc = spawn(cmd, {**self.env, **(env or {})}, self.directory / f"{name}.log")
        self.procs.append(proc)
        return proc

    def send_effects(self, numbers: range, hold: float | list[float] = 0.0) -> None:
        """Publish `tests.effect(n, hold)` for every n, each with its own hold if a list."""
        holds = hold if isinstance(hold, list) else [hold] * len(numbers)
        for n, seconds in zip(numbers, holds, strict=True):
            self.celery.send_task("tests.effect", args=(n, seconds), queue="default")

    def effects(self) -> collections.Counter[int]:
        """How many `tests.effect` rows each n has."""
        with self.app.app_context():
            names = db.session.scalars(sa.select(User.name).where(User.name.like("effect %"))).all()
            db.session.remove()
        return collections.Counter(int(name.split()[1]) for name in names)

    def ledger_keys(self, prefix: str = "effect:") -> int:
        """How many ledger keys start with `prefix`."""
        with self.app.app_context():
            count = db.session.scalar(
                sa.select(sa.func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.key.like(f"{prefix}%"))
            )
            db.session.remove()
        return int(count or 0)

    def executions(self) -> int:
        """Runs of `tests.effect` bodies so far (at least once per effect)."""
        return int(self.counters().llen(EXECUTIONS))

    def deliveries(self) -> int:
        """Deliveries of `tests.effect` messages to a pool process, duplicates included."""
        return int(self.counters().llen(DELIVERIES))

    def wait_for_effects(self, total: int, timeout: float) -> collections.Counter[int]:
        """Poll until `total` distinct n have their effect; return the counts."""
        return wait_until(
            lambda: (seen := self.effects()) and len(seen) >= total and seen,
            timeout=timeout,
            interval=0.25,
            what=f"{total} effects (logs in {self.directory})",
        )

    def pending(self) -> int:
        """Messages of the `default` queue not yet acknowledged. On Redis: waiting in the list
        or delivered and unacknowledged; on AMQP: waiting (the broker requeues a dead
        consumer's unacknowledged messages itself)."""
        url = self.env["FLASK_CELERY__BROKER_URL"]
        if url.startswith("redis"):
            broker = self.broker()
            return int(broker.llen("default")) + unacked(broker)
        with Connection(url, connect_timeout=3) as conn:
            return int(conn.default_channel.queue_declare("default", passive=True).message_count)

    def stop_workers(self) -> None:
        """Warm-stop every worker (SIGTERM, wait); beat and others keep running."""
        for proc in self.procs:
            stop(proc, timeout=30)

    def close(self) -> None:
        for proc in self.procs:
            stop(proc, timeout=30)
        self.redis.stop()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process started in its own session and every process in its group, and reap
    it: a worker's pool children die with it, as in a container that is OOM-killed."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def unacked(broker: redis.Redis) -> int:
    """Messages delivered to a worker and not yet acknowledged (kombu's Redis ack emulation)."""
    return int(broker.hlen("unacked"))


@dataclass
class KillRun:
    """What `kill_workers_while_tasks_flow` did and counted."""

    total: int
    kills: int
    seed: int
    elapsed: float
    executions: int = 0
    deliveries: int = 0

    def summary(self) -> str:
        return (
            f"{self.total} tasks, {self.kills} worker kills: 0 lost, 0 duplicated effects, "
            f"{self.executions - self.total} re-executions, "
            f"{self.deliveries - self.total} redeliveries in {self.elapsed:.1f}s (seed {self.seed})"
        )


def kill_workers_while_tasks_flow(
    stack: Stack,
    total: int,
    kills: int,
    seed: int | None = None,
    workers: int = 2,
    hold: tuple[float, float] = (0.1, 0.5),
) -> KillRun:
    """Publish `total` tasks.effect and SIGKILL a random worker at random moments (each
    killed worker is replaced at once) until `kills` kills or every effect happened; then
    wait for every effect and for the queue to drain, and check each happened exactly once.

    Set FAULT_SEED to replay a run: the seed fixes the holds, the moments and the victims.
    """
    seed = seed if seed is not None else int(os.environ.get("FAULT_SEED") or time.time_ns() % 10**6)
    rng = random.Random(seed)
    slots = [stack.worker(f"w{i}-0") for i in range(workers)]
    stack.send_effects(range(total), [rng.uniform(*hold) for _ in range(total)])
    done, started = 0, time.monotonic()
    while done < kills and len(stack.effects()) < total:
        time.sleep(rng.uniform(0.2, 1.0))  # a random moment, not a wait for readiness
        i = rng.randrange(workers)
        kill_group(slots[i])
        done += 1
        slots[i] = stack.worker(f"w{i}-{done}")
    stack.wait_for_effects(total, timeout=VISIBILITY_TIMEOUT + 60)
    wait_until(lambda: stack.pending() == 0, timeout=VISIBILITY_TIMEOUT + 20, what="drained")
    run = KillRun(total, done, seed, time.monotonic() - started)
    assert_exactly_once(stack, total, run)
    run.executions, run.deliveries = stack.executions(), stack.deliveries()
    assert run.executions >= total and run.deliveries >= run.executions
    return run


def assert_exactly_once(stack: Stack, total: int, run: KillRun | None = None) -> None:
    """Every n in range(total) has exactly one effect row and one ledger key."""
    counts = stack.effects()
    missing = sorted(set(range(total)) - set(counts))
    doubled = sorted(n for n, c in counts.items() if c > 1)
    seed = f" (seed {run.seed})" if run else ""
    assert not missing and not doubled, f"lost {missing}, duplicated {doubled}{seed}"
    assert stack.ledger_keys() == total
