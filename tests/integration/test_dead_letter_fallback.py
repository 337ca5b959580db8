"""Dead letters that survive their own failure, with a real worker on PostgreSQL.

- The database is away when a task fails for good: the dead letter waits in Redis (same fields,
  redacted) and a worker moves it into the table once the database is back, by itself.
- A task's `on_dead_letter` hook fails: its own changes are rolled back, the dead letter stays
  (on PostgreSQL through the worker, on SQLite in-process: both take the savepoint).
- A task killed by the hard time limit after two retries: one dead letter, counting three
  attempts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask

from harness import tasks
from harness.faults import Stack
from harness.postgres import Database, Postgres, postgres_bindir
from harness.processes import wait_until
from service import create_app
from service.data.db import db
from service.data.models import DeadLetter, User
from service.reliability import dead_letter
from service.reliability.dead_letter import FALLBACK_KEY

#: Hard limit 3 s (the soft one at 2 s is ignored by `tests.retry_then_hang`), under the
#: visibility timeout; quick retries.
WORKER_ENV = {
    "FLASK_CELERY__TASK_TIME_LIMIT": "3",
    "FLASK_CELERY__TASK_SOFT_TIME_LIMIT": "2",
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout": "5",
    "FLASK_RETRY_MAX_RETRIES": "3",
    "FLASK_RETRY_BACKOFF_BASE": "0.2",
}
SECRET_URL = "redis://:hunter2-secret@cache.internal:6379/0"


@dataclass
class Setup:
    stack: Stack
    postgres: Postgres | None


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, database: Database) -> Iterator[Setup]:
    """A worker on the database; on PostgreSQL a server of the module's own, which a test
    stops: the worker's session server serves other stacks."""
    directory = tmp_path_factory.mktemp("dead-letters")
    postgres = Postgres(postgres_bindir()).start() if database.name == "postgresql" else None
    url = postgres.url if postgres else database.fresh_url(directory)
    stack = Stack.start(directory, env=WORKER_ENV, database_url=url)
    try:
        stack.worker("w", concurrency=2)
        yield Setup(stack, postgres)
    finally:
        stack.close()
        if postgres:
            postgres.stop()


def letter_of(stack: Stack, task_id: str) -> dict[str, Any] | None:
    with stack.app.app_context():
        row = db.session.scalars(sa.select(DeadLetter).filter_by(task_id=task_id)).first()
        out = row.to_dict(full=True) if row is not None else None
        db.session.remove()
    return out


def letters_for(stack: Stack, task_id: str) -> int:
    with stack.app.app_context():
        count = db.session.scalar(
            sa.select(sa.func.count()).select_from(DeadLetter).filter_by(task_id=task_id)
        )
        db.session.remove()
    return int(count or 0)


def users_named(stack: Stack, name: str) -> int:
    with stack.app.app_context():
        count = db.session.scalar(sa.select(sa.func.count()).where(User.name == name))
        db.session.remove()
    return int(count or 0)


@pytest.mark.databases("postgresql")
def test_a_dead_letter_the_database_cannot_take_waits_in_redis_until_it_is_back(
    setup: Setup,
) -> None:
    stack, broker, postgres = setup.stack, setup.stack.broker(), setup.postgres
    assert postgres is not None
    postgres.halt()
    try:
        sent = stack.celery.send_task("tests.fail_loudly", args=(1, SECRET_URL))
        raw = wait_until(
            lambda: broker.lindex(FALLBACK_KEY, 0), timeout=30, what="a dead letter in Redis"
        )
    finally:
        postgres.start()
    kept = json.loads(raw)
    assert kept["task_id"] == sent.id and kept["task_name"] == "tests.fail_loudly"
    assert kept["args"] == [1, SECRET_URL]  # a re-drive sends them again
    assert kept["queue"] == "default" and kept["attempts"] == 1
    assert kept["exception_type"] == "PermanentError"
    assert "hunter2-secret" not in kept["exception_message"] + kept["traceback"]
    columns = {c.name for c in DeadLetter.__table__.columns}
    assert set(kept) <= columns
    assert columns - set(kept) == {"id", "first_attempt_at", "redriven_at", "redrive_job_id"}

    stored = wait_until(lambda: letter_of(stack, sent.id), timeout=30, what="the row")
    assert broker.llen(FALLBACK_KEY) == 0
    assert stored["exception"].startswith("PermanentError: tests.fail_loudly 1")
    assert "hunter2-secret" not in stored["exception"] + (stored["traceback"] or "")
    assert stored["attempts"] == 1


@pytest.mark.databases("sqlite", "postgresql")
def test_a_failing_hook_never_drops_the_dead_letter(setup: Setup) -> None:
    stack = setup.stack
    sent = stack.celery.send_task("tests.fail_with_broken_hook", args=(2,))
    stored = wait_until(lambda: letter_of(stack, sent.id), timeout=30, what="the dead letter")
    assert stored["exception"] == "PermanentError: tests.fail_with_broken_hook 2"
    assert users_named(stack, "hook 2") == 0  # the hook's own row went with its savepoint
    assert stack.broker().llen(FALLBACK_KEY) == 0


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp_path / "storage"),
            "CELERY": {"broker_url": "memory://", "result_backend": None},
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
        db.session.remove()
    yield app


def test_a_failing_hook_never_drops_the_dead_letter_on_sqlite(sqlite_app: Flask) -> None:
    app = sqlite_app
    task_id = str(uuid4())
    letter = {
        "task_id": task_id,
        "task_name": tasks.fail_with_broken_hook.name,
        "queue": "default",
        "args": [3],
        "kwargs": {},
        "exception_type": "PermanentError",
        "exception_message": "tests.fail_with_broken_hook 3",
        "traceback": None,
        "attempts": 1,
        "failed_at": "2026-01-01T00:00:00+00:00",
    }
    with app.app_context():
        dead_letter.store(letter)
        db.session.remove()
        assert db.session.scalars(sa.select(DeadLetter.task_id)).all() == [task_id]
        assert db.session.scalar(sa.select(sa.func.count()).where(User.name == "hook 3")) == 0


@pytest.mark.databases("sqlite", "postgresql")
def test_a_task_the_hard_time_limit_ends_counts_every_attempt(setup: Setup) -> None:
    stack = setup.stack
    sent = stack.celery.send_task("tests.retry_then_hang", args=(4, 2, 30))
    stored = wait_until(lambda: letter_of(stack, sent.id), timeout=40, what="the dead letter")
    wait_until(lambda: stack.pending() == 0, timeout=20, what="the message acknowledged")
    assert letters_for(stack, sent.id) == 1  # Celery reports a hard time limit twice
    assert stored["exception"].startswith("TimeLimitExceeded")
    assert stored["attempts"] == 3  # two retries, then the run the limit ended
    assert stored["queue"] == "default"


def test_a_failure_reported_without_its_request_counts_the_received_retries(
    sqlite_app: Flask,
) -> None:
    """The worker's main process reports some failures (Celery's rejections) without the
    task's request: retries and queue come from the message as it was received."""
    task_id = str(uuid4())
    received = SimpleNamespace(
        id=task_id, delivery_info={"routing_key": "default"}, request_dict={"retries": 4}
    )
    dead_letter.remember_delivery(received)
    task = sqlite_app.extensions["celery"].tasks[tasks.fail_loudly.name]
    dead_letter.record(sqlite_app, task, task_id, RuntimeError("rejected"), [5, "x"], {}, None)
    with sqlite_app.app_context():
        row = db.session.scalars(sa.select(DeadLetter).filter_by(task_id=task_id)).one()
        assert (row.attempts, row.queue) == (5, "default")
