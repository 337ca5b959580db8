"""A gevent worker keeps the time budget and runs the app's IO under monkey-patching.

A real `celery worker --pool gevent` on a real redis-server:
- a task past its soft limit gets `SoftTimeLimitExceeded` in its greenlet (Celery's gevent pool
  drops the soft limit; `service.worker.pools` adds it), and past its hard limit is ended and
  dead-lettered once, as under prefork: its flushed row is rolled back, its message
  acknowledged, and nothing runs it again after the visibility timeout;
- thirty IO-bound tasks wait on a receiver together in one process, each through the webhook
  transport (pinned httpx/httpcore), smtplib, the Flask app context and a session of its own,
  with psycopg on its cooperative wait, and end together: each effect once, each message
  acknowledged;

both on PostgreSQL, the chart's database;
- SIGTERM is a warm shutdown: the running greenlets finish, their messages acknowledged;
- a task that computes without yielding holds the whole worker, heartbeat included, so the
  liveness probe fails while it runs (what the chart README says of gevent);
- the leak guard, which gevent does not have, is refused at start.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from devstack.sinks import SmtpSink
from harness.faults import Stack
from harness.postgres import Postgres, empty_database_url, postgres_bindir
from harness.processes import free_port, wait_until
from harness.stack import BIN, INCLUDE_TEST_TASKS, stack_environment, start_worker
from service.data.db import db
from service.data.models import DeadLetter, User
from tests.support.gevent_tasks import SEEN

GEVENT = ("--pool", "gevent", "--include", f"tests.support.gevent_tasks,{INCLUDE_TEST_TASKS[1]}")
VISIBILITY_TIMEOUT = 6
TASKS = 30  # IO-bound tasks at once, more than kombu's default broker connection pool (10)
#: hard 3 s < visibility 6 s (contract 3); the abandoned-message sweep every second
LIMITS = {
    "FLASK_CELERY__TASK_TIME_LIMIT": "3",
    "FLASK_CELERY__TASK_SOFT_TIME_LIMIT": "1.5",
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout": str(VISIBILITY_TIMEOUT),
    "FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__unacked_restore_interval": "1",
}
HOLD = 20.0  # the longest the receiver holds a request


def gevent_worker(stack: Stack, name: str, concurrency: int) -> subprocess.Popen[bytes]:
    proc, _ = start_worker(
        stack.env, ("default",), stack.directory / f"{name}.log", concurrency, extra=GEVENT
    )
    stack.procs.append(proc)
    return proc


def seen(stack: Stack) -> list[str]:
    return [entry.decode() for entry in stack.broker().lrange(SEEN, 0, -1)]


def users_named(stack: Stack, prefix: str) -> list[str]:
    with stack.app.app_context():
        names = db.session.scalars(sa.select(User.name).where(User.name.like(f"{prefix}%"))).all()
        db.session.remove()
    return list(names)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres(postgres_bindir()).start()
    try:
        yield server
    finally:
        server.stop()


def test_limits_end_a_task_and_dead_letter_it_once_while_the_others_run(
    tmp_path: Path, postgres: Postgres
) -> None:
    # PostgreSQL: the hung task holds its row's transaction open while the others write theirs
    # (on SQLite their writes would wait for its lock in C, holding every greenlet: see README)
    env = {**LIMITS, "FLASK_SQLALCHEMY_DATABASE_URI": empty_database_url(postgres, tmp_path)}
    stack = Stack.start(tmp_path / "stack", env=env)
    try:
        gevent_worker(stack, "w", concurrency=4)
        hung = stack.celery.send_task("tests.gevent.row_then_hang", args=(1, 10.0))
        stack.send_effects(range(3), 0.2)  # beside it, in the same process
        stack.wait_for_effects(3, timeout=30)
        with stack.app.app_context():
            letters = wait_until(
                lambda: db.session.scalars(sa.select(DeadLetter).filter_by(task_id=hung.id)).all(),
                timeout=30,
                what=f"the dead letter (log {stack.directory / 'w.log'})",
            )
            db.session.remove()
        [letter] = letters
        assert letter.exception_type == "TimeLimitExceeded" and letter.attempts == 1
        wait_until(lambda: stack.pending() == 0, timeout=20, what="the message acknowledged")
        assert seen(stack) == ["start 1", "soft 1"]  # soft limit in the task, then ended
        time.sleep(VISIBILITY_TIMEOUT + 2)  # a redelivery would come back by now
        assert seen(stack) == ["start 1", "soft 1"]
        assert users_named(stack, "hang") == []  # its flushed row went with it
        assert stack.effects() == {0: 1, 1: 1, 2: 1}
        log = (stack.directory / "w.log").read_text()
        assert "Hard time limit (3.0s) exceeded for tests.gevent.row_then_hang" in log
    finally:
        stack.close()


class SlowReceiver:
    """HTTP on a free loopback port: holds every POST until `expected` are held (or `HOLD`
    seconds passed), then answers them all at once, so their tasks end together; counts how
    many it held at once."""

    def __init__(self, expected: int) -> None:
        self.ready = threading.Condition()
        self.expected, self.holding, self.most, self.released = expected, 0, 0, False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.ready:
                    receiver.holding += 1
                    receiver.most = max(receiver.most, receiver.holding)
                    receiver.released |= receiver.holding >= receiver.expected
                    receiver.ready.notify_all()
                    receiver.ready.wait_for(lambda: receiver.released, timeout=HOLD)
                    receiver.holding -= 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_io_bound_tasks_wait_together_in_one_process_on_postgresql(
    tmp_path: Path, postgres: Postgres
) -> None:
    receiver = SlowReceiver(expected=TASKS)
    smtp_port = free_port()
    sink = SmtpSink(tmp_path / "mail", port=smtp_port).start()
    env = {
        "FLASK_SQLALCHEMY_DATABASE_URI": empty_database_url(postgres, tmp_path),
        "FLASK_SMTP_HOST": "127.0.0.1",
        "FLASK_SMTP_PORT": str(smtp_port),
    }
    stack = Stack.start(tmp_path / "stack", env=env)
    try:
        gevent_worker(stack, "w", concurrency=TASKS)
        for n in range(TASKS):
            stack.celery.send_task("tests.gevent.call_out", args=(n, receiver.port))
        wait_until(
            lambda: len(seen(stack)) == TASKS,
            timeout=60,
            what=f"{TASKS} calls done (log {stack.directory / 'w.log'})",
        )
        done = [entry.split() for entry in seen(stack)]
        assert sorted(int(d[1]) for d in done) == list(range(TASKS))
        assert {d[2] for d in done} == {"204"}
        assert len({d[3] for d in done}) == 1  # one process
        assert {d[4] for d in done} != {"wait_c"}  # psycopg waits cooperatively
        # one result backend for every greenlet, not one built per task
        assert len({d[5] for d in done}) == 1
        # the waits overlapped: one process held them all at once
        assert receiver.most == TASKS
        assert sorted(users_named(stack, "call")) == sorted(f"call {n}" for n in range(TASKS))
        assert len(sink.messages()) == TASKS
        # they ended together, and each acknowledged its message (kombu's default pool of 10
        # broker connections lost some acknowledgements here: they would run again)
        wait_until(lambda: stack.pending() == 0, timeout=20, what="every message acknowledged")
        assert "Couldn't ack" not in (stack.directory / "w.log").read_text()
    finally:
        stack.close()
        sink.stop()
        receiver.close()


def test_sigterm_lets_the_running_greenlets_finish(tmp_path: Path) -> None:
    stack = Stack.start(tmp_path, env=LIMITS)
    try:
        worker = gevent_worker(stack, "w", concurrency=4)
        stack.send_effects(range(2), 1.0)  # under the 1.5 s soft limit
        wait_until(lambda: stack.executions() == 2, timeout=20, what="both tasks running")
        worker.send_signal(signal.SIGTERM)  # the main process only, as the kubelet does
        assert worker.wait(timeout=30) == 0
        assert "Warm shutdown" in (stack.directory / "w.log").read_text()
        assert stack.effects() == {0: 1, 1: 1} and stack.pending() == 0
    finally:
        stack.close()


def test_a_task_that_never_yields_holds_the_worker_until_the_liveness_probe_fails(
    tmp_path: Path,
) -> None:
    stack = Stack.start(tmp_path, env=LIMITS)
    try:
        gevent_worker(stack, "w", concurrency=4)
        probe = [str(BIN / "python"), "-m", "service.worker.probes", "worker", "--max-age", "7"]
        assert subprocess.run(probe, env=stack.env, capture_output=True).returncode == 0
        stack.celery.send_task("tests.gevent.compute", args=(15.0,))
        # the heartbeat is touched every 5 s by a greenlet, which no longer gets to run
        wait_until(
            lambda: subprocess.run(probe, env=stack.env, capture_output=True).returncode != 0,
            timeout=30,
            what="the liveness probe failing",
        )
    finally:
        stack.close()


def test_a_gevent_worker_refuses_the_leak_guard_it_does_not_have(tmp_path: Path) -> None:
    cmd = [str(BIN / "celery"), "-A", "service.make_celery", "worker", "--pool", "gevent",
           "--max-tasks-per-child", "100", "--queues", "default"]  # fmt: skip
    # nothing listens on the broker's port: the refusal comes before any connection
    env = stack_environment(tmp_path, "redis://127.0.0.1:9/0", "redis://127.0.0.1:9/1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "refusing to start: worker pool 'gevent' has no pool process to replace" in done.stderr
