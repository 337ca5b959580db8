"""The fault-injection tests' pieces: an isolated stack, killing its workers, counting outcomes.

Each test builds its own `Stack` (a redis-server, a migrated database, SQLite or PostgreSQL, and
the environment its processes get), so the session workers of tests/integration/conftest.py never
take its messages and every count belongs to that test alone. Outcomes are counted where they land:
`tests.effect` rows in the database, keys in the ledger, entries in the counting lists.
"""

from __future__ import annotations

import collections
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

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
    """A redis-server, a migrated database, and the workers started on them.

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
        database_url: str | None = None,
    ) -> Stack:
        """Start the Redis (broker and result backend, unless `broker_url` names another
        broker) and migrate the database (SQLite under `directory`, unless `database_url` names
        an empty one elsewhere); `env` adds to every process' environment."""
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
            database_url,
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

    def send_effects(self, numbers: range, hold: float | list[float] = 0.0) -> dict[int, str]:
        """Publish `tests.effect(n, hold)` for every n, each with its own hold if a list;
        returns each n's task id."""
        holds = hold if isinstance(hold, list) else [hold] * len(numbers)
        return {
            n: self.celery.send_task("tests.effect", args=(n, seconds), queue="default").id
            for n, seconds in zip(numbers, holds, strict=True)
        }

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
        with self.app.app_context():
            db.engine.dispose()  # this process' connections, on a server that outlives the stack


class BrokerLog:
    """The broker's command stream (MONITOR), read while a test runs: which task messages were
    pushed onto a queue, and which a worker recorded as unacknowledged (kombu's `unacked` hash).

    kombu's Redis transport takes a message off its list with BRPOP and records it in `unacked`
    in a second round trip (`QoS.append`); a worker killed between the two takes the message
    with it (celery/kombu#305). Such a message was pushed, is in no queue now, and was never
    recorded: `taken_unrecorded` names them, so that a test can tell that loss from its own.
    """

    _TASK_ID = re.compile(r'"id": "([0-9a-f-]{36})"')

    def __init__(self, url: str) -> None:
        self.pushed: set[str] = set()
        self.recorded: set[str] = set()
        # no read timeout: the stream may be quiet for a while; `close` ends the read
        self._client = redis.Redis.from_url(url)
        self._monitor = self._client.monitor()
        self._monitor.__enter__()  # the server has answered MONITOR when this returns
        self._marker = ""
        self._seen = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                name, _, args = self._monitor.next_command()["command"].partition(" ")
                name = name.upper()
                if name == "ECHO" and self._marker and args == self._marker:
                    self._seen.set()
                elif name in ("LPUSH", "RPUSH") or (name == "HSET" and args[:8] == "unacked "):
                    found = self._TASK_ID.search(args)
                    if found:
                        (self.recorded if name == "HSET" else self.pushed).add(found.group(1))
        except (redis.RedisError, OSError, ValueError, AttributeError):
            return  # the connection closed: `close`

    def sync(self) -> None:
        """Return once every command the server ran before this call has been read."""
        self._marker, self._seen = f"broker-log-{uuid4()}", threading.Event()
        self._client.echo(self._marker)  # through another connection than the stream's
        if not self._seen.wait(30):
            raise TimeoutError("the MONITOR stream fell 30 s behind")

    def taken_unrecorded(self, task_ids: set[str]) -> set[str]:
        """Of `task_ids`, those pushed onto a queue and never recorded as unacknowledged."""
        self.sync()
        return {t for t in task_ids if t in self.pushed and t not in self.recorded}

    def close(self) -> None:
        self._monitor.connection.disconnect()
        self._thread.join(10)
        self._client.close()


def settle(done: Callable[[], bool], pending: Callable[[], int], timeout: float, what: str) -> None:
    """Wait until `done()`, or until no message is left that could still make it so: nothing
    `pending` (waiting or unacknowledged), still so 2 s later (a message a worker is taking is
    in no list for the moment before it records it as unacknowledged)."""

    def settled() -> bool:
        if done():
            return True
        if pending():
            return False
        time.sleep(2)
        return pending() == 0

    wait_until(settled, timeout=timeout, what=what)


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
    #: Messages a killed worker took off the broker before recording them (`BrokerLog`),
    #: sent again by the test.
    taken: int = 0

    def summary(self) -> str:
        return (
            f"{self.total} tasks, {self.kills} worker kills: 0 lost by the project "
            f"({self.taken} taken unrecorded by a killed worker: kombu#305, sent again), "
            f"0 duplicated effects, "
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
    On Redis, a task whose message a killed worker took off the queue before recording it
    (`BrokerLog`: kombu's loss, not the project's) is sent again and counted in `taken`; any
    other missing effect fails.

    Set FAULT_SEED to replay a run: the seed fixes the holds, the moments and the victims.
    """
    seed = seed if seed is not None else int(os.environ.get("FAULT_SEED") or time.time_ns() % 10**6)
    rng = random.Random(seed)
    slots = [stack.worker(f"w{i}-0") for i in range(workers)]
    broker_url = stack.env["FLASK_CELERY__BROKER_URL"]
    log = BrokerLog(broker_url) if broker_url.startswith("redis") else None
    ids = stack.send_effects(range(total), [rng.uniform(*hold) for _ in range(total)])
    done, started = 0, time.monotonic()
    while done < kills and len(stack.effects()) < total:
        time.sleep(rng.uniform(0.2, 1.0))  # a random moment, not a wait for readiness
        i = rng.randrange(workers)
        kill_group(slots[i])
        done += 1
        slots[i] = stack.worker(f"w{i}-{done}")
    settle(
        lambda: len(stack.effects()) >= total,
        stack.pending,
        timeout=VISIBILITY_TIMEOUT + 60,
        what=f"{total} effects or an empty queue (logs in {stack.directory})",
    )
    missing = set(range(total)) - set(stack.effects())
    taken = log.taken_unrecorded({ids[n] for n in missing}) if log else set()
    if log:
        log.close()
    run = KillRun(total, done, seed, time.monotonic() - started, taken=len(taken))
    if missing - {n for n in missing if ids[n] in taken}:
        assert_exactly_once(stack, total, run)  # fails, naming what the project lost
    assert len(taken) <= done, f"{len(taken)} messages taken unrecorded after {done} kills"
    for n in sorted(missing):  # as an operator would: send it again
        stack.celery.send_task("tests.effect", args=(n, 0), queue="default", task_id=ids[n])
    stack.wait_for_effects(total, timeout=60)
    wait_until(lambda: stack.pending() == 0, timeout=VISIBILITY_TIMEOUT + 20, what="drained")
    run.elapsed = time.monotonic() - started
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
