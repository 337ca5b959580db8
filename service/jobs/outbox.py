"""The job outbox: a job row in state `recorded` is a message still to be published.

The API commits the job's row before publishing, then publishes once (`publish`); success
marks the row `queued`. When the request cannot tell whether the message reached the broker (a
timeout after sending, a connection lost mid-publish) or dies before publishing (a killed
gunicorn worker), the row stays `recorded` and the relay publishes it: beat's leader calls
`relay` after every tick, for every row recorded more than `OUTBOX_RELAY_AFTER` seconds ago.
Publishing a job twice is safe in effect: both messages carry the job id as their task id, and
the task's idempotency ledger makes the second delivery a no-op.

A job can also be lost after its publish: kombu's Redis transport takes a message off its queue
(BRPOP) and records it for redelivery in a second round trip, so a worker killed between the two
takes the message with it (celery/kombu#305). The row then stays `queued` and never starts.
`rescue` finds such rows (queued more than `OUTBOX_RESCUE_AFTER` seconds ago) and publishes them
again when their message is in none of the queue's lists and held by no worker (not in the
transport's `unacked` hash); a false alarm (a message taken in the instant between the two
looks) only makes a second delivery, which the ledger absorbs.

A publish starts with a bounded probe of the broker (a PING on the connection the message will
use). A probe that fails proves that nothing was sent: `NotSent`, and the caller may undo the
job. A publish that fails after a good probe is `Unsure`: the message may be in the broker.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from celery import Celery
from flask import Flask

from .. import redis_options
from ..data.db import UTCDateTime, db, utcnow
from ..data.models import Job
from . import lifecycle

log = logging.getLogger(__name__)

#: Most rows the relay publishes per tick, so that a long backlog never holds beat long.
RELAY_BATCH = 100
#: A queue longer than this is not searched for lost messages (a backlog that long is not the
#: sign of a lost message, and reading it would cost the broker); its jobs wait for a shorter one.
RESCUE_SCAN_LIMIT = 10_000
_SCAN_CHUNK = 1_000


class NotSent(Exception):
    """The broker could not be reached, and the message was not sent."""


class Unsure(Exception):
    """Publishing failed after the broker answered: the message may or may not be there."""


def publish(celery_app: Celery, job: Job) -> None:
    """Publish the job's message (task id = job id) and mark its row `queued`.

    Raises NotSent or Unsure; the caller commits nothing else in between.
    """
    with celery_app.pool.acquire(block=True) as conn:
        try:
            _probe(conn)
        except Exception as exc:
            raise NotSent(str(exc)) from exc
        try:
            _send(celery_app, job, conn)
        except Exception as exc:
            raise Unsure(str(exc)) from exc
    mark_queued(job.id)


def mark_queued(job_id: str) -> None:
    """`recorded` -> `queued`, in its own commit; a row the worker already moved on stays.

    One UPDATE on a connection of its own, committed by itself (autocommit): one round trip,
    and the session's rows (the job the caller answers with) are not expired by it.
    Never raises: the message is out, and a row left `recorded` is only published again by the
    relay, which the ledger makes harmless.

    For the same reason the mark need not survive a database crash, and its commit does not
    wait for a disk flush (~3 ms with fsync on), which would double an enqueue's: on PostgreSQL
    `synchronous_commit` is off for this statement's own transaction; on SQLite (WAL) the
    connection commits it with `synchronous=NORMAL`, and the next commit with the connection's
    own setting flushes it. The job's INSERT, which must be durable before its message is
    published, still waits for its flush.
    """
    update = (
        sa.update(Job)
        .where(Job.id == job_id, Job.state == "recorded")
        .values(state="queued", queued_at=sa.literal(utcnow(), UTCDateTime()))
    )
    try:
        with db.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            dialect = connection.dialect.name
            if dialect == "postgresql":
                no_flush_wait = sa.func.set_config("synchronous_commit", "off", sa.true())
                connection.execute(update.where(no_flush_wait.is_not(None)))
            elif dialect == "sqlite":
                level = connection.exec_driver_sql("PRAGMA synchronous").scalar()
                connection.exec_driver_sql("PRAGMA synchronous=NORMAL")
                try:
                    connection.execute(update)
                finally:
                    connection.exec_driver_sql(f"PRAGMA synchronous={int(level or 2)}")
            else:
                connection.execute(update)
    except Exception:  # noqa: BLE001 - see above
        log.warning("published job %s but could not mark it queued", job_id, exc_info=True)


def relay(app: Flask, celery_app: Celery) -> int:
    """Publish the jobs recorded more than `OUTBOX_RELAY_AFTER` seconds ago; how many.

    Stops at the first broker error (the next tick tries again), and never raises.
    """
    sent = 0
    with app.app_context():
        try:
            jobs = _waiting(app, "recorded", Job.created_at, "OUTBOX_RELAY_AFTER")
            for job in jobs:
                publish(celery_app, job)
                sent += 1
                log.info("outbox relay published job %s (%s)", job.id, job.task_name)
        except Exception as exc:  # noqa: BLE001 - beat goes on; the rows wait for the next tick
            log.warning("outbox relay stopped after %d job(s): %s", sent, exc)
        finally:
            db.session.remove()
    return sent


def rescue(app: Flask, celery_app: Celery) -> int:
    """Publish again the jobs `queued` more than `OUTBOX_RESCUE_AFTER` seconds ago, never
    started, whose message the Redis broker no longer holds anywhere; how many. Never raises."""
    sent = 0
    with app.app_context():
        try:
            jobs = _waiting(app, "queued", Job.queued_at, "OUTBOX_RESCUE_AFTER")
            if not jobs:
                return 0
            with celery_app.connection_for_write() as conn:
                held = _held_messages(conn.default_channel, {job.queue for job in jobs})
            for job in jobs:
                if held is None or job.id in held or not held.searched(job.queue):
                    continue
                publish(celery_app, job)
                sent += 1
                log.warning(
                    "outbox rescue published job %s (%s) again: queued %s and its message is in "
                    "no queue and held by no worker",
                    job.id, job.task_name, job.queued_at,
                )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - beat goes on; the rows wait for the next look
            log.warning("outbox rescue stopped after %d job(s): %s", sent, exc)
        finally:
            db.session.remove()
    return sent


def _waiting(app: Flask, state: str, since: Any, setting: str) -> list[Job]:
    """The oldest jobs (a batch) in `state` since more than the `setting`'s seconds."""
    older = utcnow() - timedelta(seconds=float(app.config[setting]))
    query = sa.select(Job).where(Job.state == state, since <= older)
    return list(db.session.scalars(query.order_by(since).limit(RELAY_BATCH)).all())


class _Held:
    """The text of every message the broker holds for some queues, and which were searched."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.queues: set[str] = set()

    def searched(self, queue: str) -> bool:
        return queue in self.queues

    def __contains__(self, job_id: object) -> bool:
        needle = str(job_id).encode()
        return any(needle in message for message in self.messages)


def _held_messages(channel: Any, queues: set[str]) -> _Held | None:
    """Every message in `queues`' lists (priority lists too), then every unacknowledged one;
    None when the broker is not Redis (other transports have no such window)."""
    if not hasattr(channel, "unacked_key") or not hasattr(channel, "conn_or_acquire"):
        return None
    held = _Held()
    with channel.conn_or_acquire() as client:
        for queue in sorted(queues):
            keys = {channel._q_for_pri(queue, pri) for pri in channel.priority_steps}
            if sum(int(client.llen(key)) for key in keys) > RESCUE_SCAN_LIMIT:
                log.info("outbox rescue: queue %s is longer than %d, not searched",
                         queue, RESCUE_SCAN_LIMIT)  # fmt: skip
                continue
            for key in sorted(keys):
                start = 0
                while chunk := client.lrange(key, start, start + _SCAN_CHUNK - 1):
                    held.messages.extend(chunk)
                    start += _SCAN_CHUNK
            held.queues.add(queue)
        # read after the lists: a message moving from a list to `unacked` is seen in one of them
        held.messages.extend(client.hvals(channel.unacked_key))
    return held


class Relay:
    """`relay` for beat's ticks, at most once per `interval` seconds, for one Celery app; it
    also marks `dead_lettered` the failed jobs whose dead letter was stored late, and every
    `rescue_interval` seconds runs `rescue`."""

    def __init__(
        self, app: Flask, celery_app: Celery, interval: float = 1.0, rescue_interval: float = 30.0
    ) -> None:
        self.app, self.celery_app, self.interval = app, celery_app, interval
        self.rescue_interval = min(rescue_interval, float(app.config["OUTBOX_RESCUE_AFTER"]))
        self.last = self.last_rescue = 0.0

    def __call__(self, ticking: Any) -> None:
        """Called with the ticking scheduler's Celery app (ours: the hook lives on it)."""
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        relay(self.app, self.celery_app)
        lifecycle.settle_dead_letters(self.app)
        if now - self.last_rescue >= self.rescue_interval:
            self.last_rescue = now
            rescue(self.app, self.celery_app)


def _probe(conn: Any) -> None:
    """A bounded round trip to the broker on `conn` (its transport's socket timeouts)."""
    # One attempt: kombu would retry a failed connect for `broker_connection_timeout` (4 s).
    conn.ensure_connection(max_retries=0)
    channel = conn.default_channel  # AMQP: its channel; Redis: a channel, which pings
    acquire = getattr(channel, "conn_or_acquire", None)
    if acquire is not None:  # Redis: the pool a publish takes its connection from
        redis_options.reuse_one_client(channel)
        with channel.conn_or_acquire() as client:
            client.ping()


def _send(celery_app: Celery, job: Job, conn: Any) -> None:
    # One attempt: a retry after a timeout would only stretch the wait; the relay retries.
    # No result subscription either: the row, not the result backend, answers for the job.
    options: dict[str, Any] = {
        "task_id": job.id,
        "connection": conn,
        "retry": False,
        "ignore_result": True,
        "headers": {lifecycle.JOB_HEADER: True},
    }
    if job.eta is not None:
        options["eta"] = job.eta
    args, kwargs = tuple(job.task_args or ()), dict(job.task_kwargs or {})
    task = celery_app.tasks.get(job.task_name)
    if task is not None:
        task.apply_async(args, kwargs, **options)
    else:
        celery_app.send_task(job.task_name, args, kwargs, **options)
