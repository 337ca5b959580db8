"""The dead-letter store: every task that failed for good, with what is needed to run it again.

`record` runs from the `task_failure` signal: in the pool child for an exception, in the
worker's main process for a hard time limit. Retries do not reach it (they are not failures),
so each row is a final failure: permanent, or transient with its retries exhausted. With
`acks_late` the failed message is acknowledged, so this row is the only copy left.

When the database cannot take the row (it is the failing dependency, say), the dead letter is
kept in Redis instead: a list (`FALLBACK_KEY`, on the broker's Redis, else the result store's)
of the same fields as JSON, oldest first. Every worker checks that list every `DRAIN_INTERVAL`
seconds and moves its entries into the table once the database answers again, one worker at a
time (a lock in Redis). An entry leaves the list only after its row committed, so a worker that
dies while moving it leaves it for the next one (a second row, never a lost one).

A task's `on_dead_letter` hook (mark an export failed, say) runs in a savepoint of the dead
letter's transaction: if it fails, its changes are rolled back and logged, and the dead letter
is committed all the same.

The exception's text and traceback are stored redacted (`service.redact`): they may quote a URL
with its password or token. The arguments are stored as they are, since a re-drive sends them
again; they are ids and plain values (no secrets), and the API redacts them when it answers.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import traceback as tb
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import uuid4

import redis
from celery import Celery, Task, bootsteps
from celery.exceptions import TimeLimitExceeded
from flask import Flask

from .. import redis_options
from ..data.db import db, utcnow
from ..data.models import DeadLetter, Job
from ..redact import redact

#: Task name -> what to do to the task's own rows when it is dead-lettered (mark an export
#: failed, say), run in the same transaction as the dead-letter row. Filled by `job_task`.
ON_DEAD_LETTER: dict[str, Callable[..., None]] = {}

#: The Redis list of dead letters the database could not take, oldest first.
FALLBACK_KEY = "flask_celery:dead_letters:fallback"
#: Held by the one worker moving them into the table.
DRAIN_LOCK_KEY = "flask_celery:dead_letters:drain"
#: Seconds between a worker's checks of the list; the lock outlives a drain many times over.
DRAIN_INTERVAL = 5.0
DRAIN_LOCK_SECONDS = 60
#: Entries one drain moves at most; the next check moves the rest.
DRAIN_BATCH = 500

#: Messages a worker's main process received lately: task id -> (retries, queue). A hard time
#: limit is reported from the main process, where the task's request is not at hand; this is
#: where its attempts and queue come from then. Bounded: only recent ids are needed.
_received: OrderedDict[str, tuple[int, str | None]] = OrderedDict()
#: Task ids this process dead-lettered for a hard time limit, to record each once.
_hard_limited: OrderedDict[str, None] = OrderedDict()
RECEIVED_KEPT = 10_000

log = logging.getLogger(__name__)
_clients: dict[tuple[int, str], redis.Redis] = {}


def remember_delivery(request: Any) -> None:
    """Note a received message's retries and queue (worker main process, `task_received`)."""
    task_id = getattr(request, "id", None)
    if not task_id:
        return
    delivery = getattr(request, "delivery_info", None) or {}
    retries = int(request.request_dict.get("retries") or 0)
    _received[task_id] = (retries, delivery.get("routing_key"))
    _received.move_to_end(task_id)
    while len(_received) > RECEIVED_KEPT:
        _received.popitem(last=False)


def record(
    app: Flask, task: Task, task_id: str, exc: BaseException, args: Any, kwargs: Any, einfo: Any
) -> None:
    """Store one final failure, in the table or else in Redis; never raises (a failure handler
    must not fail the worker)."""
    if isinstance(exc, TimeLimitExceeded):
        # Celery reports a hard time limit twice, both in the main process: once as the pool's
        # result, once from the request's timeout handler.
        if task_id in _hard_limited:
            return
        _hard_limited[task_id] = None
        while len(_hard_limited) > RECEIVED_KEPT:
            _hard_limited.popitem(last=False)
    letter = _letter(task, task_id, exc, args, kwargs, einfo)
    try:
        with app.app_context():
            store(letter)
    except Exception as db_exc:  # noqa: BLE001 - kept in Redis, or logged with the arguments
        if _keep_in_redis(task.app, letter):
            log.warning(
                "dead-lettered %s[%s] into Redis (%s), the database could not take it: %r",
                task.name, task_id, FALLBACK_KEY, db_exc,
            )  # fmt: skip
        else:
            log.exception("could not dead-letter %s[%s] args=%r", task.name, task_id, args)
        return
    log.warning(
        "dead-lettered %s[%s] after %d attempt(s): %r",
        task.name, task_id, letter["attempts"], exc,
    )  # fmt: skip


def _letter(
    task: Task, task_id: str, exc: BaseException, args: Any, kwargs: Any, einfo: Any
) -> dict[str, Any]:
    """The dead letter's fields as plain JSON values, redacted."""
    request = task.request if task.request.id == task_id else None
    if request is not None:
        retries = request.retries or 0
        queue = (request.delivery_info or {}).get("routing_key")
    else:  # the main process, without the task's request: a hard time limit
        retries, queue = _received.get(task_id, (0, None))
    trace = redact(str(einfo) if einfo else "".join(tb.format_exception(exc)))
    return {
        "task_id": task_id,
        "task_name": task.name,
        "queue": queue,
        "args": list(args or ()),
        "kwargs": dict(kwargs or {}),
        "exception_type": type(exc).__name__,
        "exception_message": redact(str(exc))[:10_000],
        "traceback": trace[-20_000:],
        "attempts": retries + 1,
        "failed_at": utcnow().isoformat(),
    }


def store(letter: dict[str, Any]) -> DeadLetter:
    """Insert `letter` and run its task's hooks, in one transaction (in an app context)."""
    row = DeadLetter(
        **{k: v for k, v in letter.items() if k != "failed_at"},
        failed_at=datetime.fromisoformat(letter["failed_at"]),
        first_attempt_at=_enqueued_at(letter["task_id"]),
    )
    db.session.add(row)
    db.session.flush()  # the row first: its own failure is not a hook's
    for hook in _hooks(letter):
        try:
            with db.session.begin_nested():
                hook()
        except Exception:  # noqa: BLE001 - the hook's own changes are rolled back
            log.exception(
                "a dead-letter hook of %s[%s] failed; the dead letter is kept",
                letter["task_name"], letter["task_id"],
            )  # fmt: skip
    db.session.commit()
    return row


def _hooks(letter: dict[str, Any]) -> list[Callable[[], None]]:
    """What a dead letter does to other rows, each run in a savepoint of its transaction."""
    hooks: list[Callable[[], None]] = []
    on_dead_letter = ON_DEAD_LETTER.get(letter["task_name"])
    if on_dead_letter is not None:
        hooks.append(lambda: on_dead_letter(*letter["args"], **letter["kwargs"]))
    return hooks


def _enqueued_at(task_id: str) -> Any:
    # Jobs from the API share their task's id; beat's and fan-out tasks have no job row.
    job = db.session.get(Job, task_id)
    return job.created_at if job is not None else None


# - The fallback store in Redis ---------------------------------------------------------------


def fallback_client(celery_app: Celery) -> redis.Redis | None:
    """This process' client of the Redis that keeps dead letters the database could not take:
    the broker's, else the result store's; None when neither is Redis."""
    conf = celery_app.conf
    for url, tls in (
        (conf.broker_url, conf.broker_use_ssl),
        (conf.result_backend, conf.redis_backend_use_ssl),
    ):
        if redis_options.is_redis(url):
            # a prefork child must not share its parent's socket; apps may differ in trust
            key = (os.getpid(), f"{url} {tls!r}")
            if key not in _clients:
                _clients[key] = redis_options.client(
                    url, tls, socket_connect_timeout=3, socket_timeout=5
                )
            return _clients[key]
    return None


def _keep_in_redis(celery_app: Celery, letter: dict[str, Any]) -> bool:
    client = fallback_client(celery_app)
    if client is None:
        return False
    try:
        client.rpush(FALLBACK_KEY, json.dumps(letter, default=str))
    except redis.RedisError as exc:
        log.error("could not keep the dead letter in Redis either: %r", exc)
        return False
    return True


def drain(app: Flask, client: redis.Redis, batch: int = DRAIN_BATCH) -> int:
    """Move dead letters kept in Redis into the table, oldest first; how many moved. Raises
    when the database (or Redis) still fails; what was not moved stays in the list."""
    token = uuid4().hex
    if not client.set(DRAIN_LOCK_KEY, token, nx=True, ex=DRAIN_LOCK_SECONDS):
        return 0  # another worker is at it
    moved = 0
    try:
        while moved < batch:
            raw: Any = client.lindex(FALLBACK_KEY, 0)
            if raw is None:
                break
            with app.app_context():
                store(json.loads(raw))
            client.lrem(FALLBACK_KEY, 1, raw)  # only once its row is committed
            moved += 1
    finally:
        if client.get(DRAIN_LOCK_KEY) == token.encode():
            client.delete(DRAIN_LOCK_KEY)
    if moved:
        log.warning("moved %d dead letter(s) from Redis into the table", moved)
    return moved


class DeadLetterDrain(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: every `DRAIN_INTERVAL` seconds, if dead letters wait in Redis, move them
    into the table, in a thread (a database that hangs must not stall the consumer).

    Celery instantiates steps itself, so the Flask app is a class attribute: add the class that
    `for_app(app)` returns.
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}
    flask_app: Flask

    @classmethod
    def for_app(cls, app: Flask) -> type[DeadLetterDrain]:
        """This step, storing through `app`."""
        return type(cls.__name__, (cls,), {"flask_app": app, "__module__": cls.__module__})

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None
        self.thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        self.tref = parent.timer.call_repeatedly(DRAIN_INTERVAL, self.check, (parent,))

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

    def check(self, parent: Any) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        client = fallback_client(parent.app)
        try:
            if client is None or not client.llen(FALLBACK_KEY):
                return
        except redis.RedisError:
            return  # the broker is away: the consumer is reconnecting
        self.thread = threading.Thread(target=self.move, args=(client,), daemon=True)
        self.thread.start()

    def move(self, client: redis.Redis) -> None:
        try:
            drain(self.flask_app, client)
        except Exception as exc:  # noqa: BLE001 - the next check tries again
            log.info("dead letters wait in Redis, the database is not back yet: %r", exc)
