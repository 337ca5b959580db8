"""Enqueue a job so that it is recorded once, published once, and never half-written.

The job's rows (its `jobs` row and any domain row the task will read) are committed before the
message is published, because a worker may start the task the instant it is published. If
publishing fails (broker down), those rows are deleted again and the caller answers 503. With
an `Idempotency-Key`, the key's unique constraint makes a retried request return the first job.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import Task

from ..data.db import db
from ..data.models import Job
from ..routing import queue_for

#: What a failed publish raises when the broker cannot be reached.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def is_broker_error(exc: BaseException) -> bool:
    """True when `exc` means Redis (broker or result store) could not be reached.

    Celery's Redis result store subscribes to the job's result channel before publishing; when
    it cannot reconnect it raises RuntimeError caused by the connection error.
    """
    if isinstance(exc, RuntimeError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return isinstance(exc, BROKER_ERRORS)


class BrokerUnavailable(Exception):
    """The broker could not take the message; nothing was recorded."""


class IdempotencyConflict(Exception):
    """The key was already used for a different request."""


@dataclass
class Enqueued:
    job: Job
    created: bool


@dataclass
class JobRequest:
    """What to run: the task, its arguments (ids and plain values), scheduling options."""

    kind: str
    task: Task
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    #: The row the task works on, made with the job in the same transaction (an export, a
    #: webhook delivery): called with the job id; the task then gets the row's id as argument.
    new_row: Callable[[str], Any] | None = None
    #: The caller it is enqueued for (`service.auth.Caller.owner`): who may read it.
    owner: str | None = None


def fingerprint(kind: str, body: Any) -> str:
    """A digest of the request, to tell a retry from a different request with the same key."""
    canonical = json.dumps([kind, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def enqueue(req: JobRequest, body: Any, idempotency_key: str | None = None) -> Enqueued:
    """Record and publish the job, or return the job already recorded under the key."""
    digest = fingerprint(req.kind, body)
    if idempotency_key is not None:
        existing = _by_key(idempotency_key, digest)
        if existing is not None:
            return Enqueued(existing, created=False)

    job_id = str(uuid.uuid4())
    rows, args = [], req.args
    if req.new_row is not None:
        row = req.new_row(job_id)
        db.session.add(row)
        db.session.flush()  # assigns the id the task will get
        rows, args = [row], (row.id,)
    job = Job(
        id=job_id,
        kind=req.kind,
        task_name=req.task.name,
        queue=queue_for(req.task.name),
        idempotency_key=idempotency_key,
        request_fingerprint=digest,
        owner=req.owner,
    )
    db.session.add(job)
    try:
        db.session.commit()
    except sqlalchemy.exc.IntegrityError:
        # Another request with the same key committed first: answer with its job.
        db.session.rollback()
        existing = _by_key(idempotency_key, digest) if idempotency_key else None
        if existing is None:
            raise
        return Enqueued(existing, created=False)

    try:
        req.task.apply_async(args, req.kwargs, task_id=job_id, ignore_result=False, **req.options)
    except BaseException as exc:
        # Not published, so not a job: remove what was recorded for it.
        for row in [job, *reversed(rows)]:
            db.session.delete(row)
        db.session.commit()
        if is_broker_error(exc):
            raise BrokerUnavailable(str(exc)) from exc
        raise
    return Enqueued(job, created=True)


def _by_key(key: str, digest: str) -> Job | None:
    job = db.session.execute(db.select(Job).filter_by(idempotency_key=key)).scalar_one_or_none()
    if job is not None and job.request_fingerprint != digest:
        raise IdempotencyConflict(key)
    return job
