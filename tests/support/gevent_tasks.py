"""Tasks for the gevent worker's tests (tests/integration/test_worker_gevent.py), loaded into
that worker with `--include tests.support.gevent_tasks`.

Each notes what it saw in a Redis list on the broker (`SEEN`), one "<what> <n> ..." entry per
event, so the test reads what happened inside the worker.
"""

from __future__ import annotations

import os
import sys
import time
from uuid import uuid4

import redis
from celery import current_app as current_celery
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from harness.outbound import post_to_loopback
from service.data.db import db
from service.data.models import User
from service.outbound.mail import send_mail
from service.reliability.task import job_task

SEEN = "tests:gevent:seen"


def note(*words: object) -> None:
    """RPUSH `words` to `SEEN` on the broker's Redis."""
    client = redis.Redis.from_url(str(current_celery.conf.broker_url))
    client.rpush(SEEN, " ".join(str(w) for w in words))
    client.close()


@job_task("tests.gevent.row_then_hang", key=lambda n, hold: f"hang:{n}", store_result=False)
def row_then_hang(n: int, hold: float) -> None:
    """Flush a User row for `n`, then hold through the soft limit (noting it) into the hard one:
    the row must never be committed, the task never run again."""
    note("start", n)
    db.session.add(User(email=f"hang-{n}-{uuid4().hex[:8]}@example.com", name=f"hang {n}"))
    db.session.flush()
    try:
        time.sleep(hold)
    except SoftTimeLimitExceeded:
        note("soft", n)
        time.sleep(hold)
    note("returned", n)


@job_task("tests.gevent.call_out", key=lambda n, port: f"call-out:{n}", store_result=False)
def call_out(n: int, port: int) -> None:
    """POST to the receiver on loopback through the webhook transport (pinned httpx/httpcore),
    send a mail (smtplib), then create the User row of `n` in the task's session. Notes, with
    the outcome, the identity of the result backend this greenlet sees, taken before the
    waits, while every other task's greenlet (and any backend of its own) is alive too."""
    backend = id(current_celery.backend)
    status = post_to_loopback(port, f"/hooks/{n}")
    send_mail("ada@example.com", f"call-out {n}", "body", f"<call-out-{n}@example.com>")
    db.session.add(User(email=f"call-{n}-{uuid4().hex[:8]}@example.com", name=f"call {n}"))
    waiting = sys.modules.get("psycopg.waiting")
    wait = getattr(getattr(waiting, "wait", None), "__name__", "-")
    note("done", n, status, os.getpid(), wait, backend)


@shared_task(name="tests.gevent.compute")
def compute(seconds: float) -> None:
    """Compute for `seconds` without ever yielding to another greenlet."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
