"""Real `celery beat` processes on a test's own stack, and what they publish.

No worker consumes the `default` queue in these tests, so every message beat publishes stays
in that Redis list, with the process that sent it in its `origin` header (`gen<pid>@<host>`).
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from harness.faults import Stack
from harness.stack import BIN
from service.data.db import db, utcnow
from service.data.models import User

#: redbeat's leader lock, under the project's key prefix.
LOCK = "flask_celery:redbeat:lock"


def beat_env(entry: str, task: str, lock_timeout: int, loop_interval: int) -> dict[str, str]:
    """A beat whose schedule is `entry`, running `task` every second with its entry name."""
    schedule = {entry: {"task": task, "schedule": 1.0, "kwargs": {"schedule_entry": entry}}}
    return {
        "FLASK_CELERY__REDBEAT_LOCK_TIMEOUT": str(lock_timeout),
        "FLASK_CELERY__BEAT_MAX_LOOP_INTERVAL": str(loop_interval),
        "FLASK_CELERY__BEAT_SCHEDULE": json.dumps(schedule),
    }


def start_beat(stack: Stack, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A real `celery beat` of `stack`; its process and its log, `<name>.log`."""
    cmd = [str(BIN / "celery"), "-A", "service.make_celery", "beat", "--loglevel", "INFO"]
    return stack.spawn(name, cmd), stack.directory / f"{name}.log"


def origin(proc: subprocess.Popen[bytes]) -> str:
    """The prefix of the `origin` header of the messages `proc` publishes."""
    return f"gen{proc.pid}@"


@dataclass
class Tick:
    at: float  # time.monotonic() when the watcher saw it
    origin: str
    kwargs: dict[str, Any]


def decode(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A message of the Redis list: its headers and its task's kwargs."""
    message = json.loads(raw)
    _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    return message["headers"], kwargs


def published(broker: redis.Redis, task: str) -> list[Tick]:
    """Every `task` message waiting in the `default` list, oldest first (no arrival times)."""
    ticks = []
    for raw in reversed(broker.lrange("default", 0, -1)):
        headers, kwargs = decode(raw)
        if headers["task"] == task:
            ticks.append(Tick(0.0, headers["origin"], kwargs))
    return ticks


def watch(
    broker: redis.Redis, task: str, seconds: float
) -> tuple[list[Tick], list[tuple[float, bytes | None]]]:
    """Every `task` message published during `seconds`, as it arrived, and every change of
    the leader lock's token (None while nobody holds it)."""
    seen, token = broker.llen("default"), broker.get(LOCK)
    ticks: list[Tick] = []
    tokens: list[tuple[float, bytes | None]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        length, current = broker.llen("default"), broker.get(LOCK)
        now = time.monotonic()
        if current != token:
            token = current
            tokens.append((now, token))
        if length > seen:
            # publishing LPUSHes: the newest messages are at the head of the list
            for raw in reversed(broker.lrange("default", 0, length - seen - 1)):
                headers, kwargs = decode(raw)
                if headers["task"] == task:
                    ticks.append(Tick(now, headers["origin"], kwargs))
            seen = length
        time.sleep(0.05)
    return ticks, tokens


def gaps(ticks: list[Tick]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(ticks)]


def trial_that_ended(stack: Stack, name: str) -> int:
    """A user whose trial has ended: the next `periodic.expire_trials` run expires it."""
    with stack.app.app_context():
        user = User(email=f"{name}@example.com", name=name, trial_ends_at=utcnow())
        db.session.add(user)
        db.session.commit()
        user_id = user.id
        db.session.remove()
    return user_id


def plan(stack: Stack, user_id: int) -> str:
    with stack.app.app_context():
        value = str(db.session.get(User, user_id).plan)
        db.session.remove()
    return value
