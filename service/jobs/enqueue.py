"""Enqueue a job so that it is recorded once, published at least once, and never half-written.

The job's rows (its `jobs` row and any domain row the task will read) are committed before the
message is published, because a worker may start the task the instant it is published. The
`jobs` row, in state `recorded`, is also the outbox entry (`service.jobs.outbox`): it holds the
task's arguments and absolute `eta`, so that the relay can publish it when this request could
not finish publishing. Only a publish that provably sent nothing (the broker refused, or did not
answer the probe) removes the rows again: the caller then answers 503. With an
`Idempotency-Key`, the key's unique constraint makes a retried request return the first job.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from celery import Celery, Task

from ..data.db import db, utcnow
from ..data.models import Job
from ..routing import queue_for
from .outbox import NotSent, Unsure, publish

#: Longest a request takes from recording a job to knowing whether it was published (the probe
#: and the publish, each bounded by the broker's socket timeouts), seconds.
PUBLISH_WINDOW = 5.0


class BrokerUnavailable(Exception):
    """The broker could not be reached and nothing was sent; the job was removed again."""


class IdempotencyConflict(Exception):
    """The key was already used for a different request."""


@dataclass
class Enqueued:
    job: Job
    created: bool
    #: False when the publish was ambiguous: the row stays `recorded`, the relay publishes it.
    published: bool = True


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


def enqueue(
    req: JobRequest, body: Any, idempotency_key: str | None = None, celery_app: Celery | None = None
) -> Enqueued:
    """Record and publish the job, or return the job already recorded under the key.

    Raises BrokerUnavailable when nothing was sent (the job's rows are gone again). A publish
    that may have reached the broker leaves the row `recorded` for the relay: the job will run.
    """
    digest = fingerprint(req.kind, body)
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
        state="recorded",
        task_args=list(args),
        task_kwargs=dict(req.kwargs),
        eta=run_at(req.options),
    )
    try:
        _record(job)
    except sqlalchemy.exc.IntegrityError:
        # The key is taken: a retry of an earlier request (or a concurrent one that committed
        # first) is answered with that request's job.
        db.session.rollback()
        existing = _by_key(idempotency_key, digest) if idempotency_key else None
        if existing is None:
            raise
        settled = _settled(existing)
        if settled is None:  # its request found the broker down and removed it
            raise BrokerUnavailable("the job recorded under this key was not sent") from None
        return Enqueued(settled, created=False)

    try:
        publish(celery_app or req.task.app, job)
    except NotSent as exc:
        # Nothing reached the broker, so not a job: remove what was recorded for it.
        db.session.rollback()
        db.session.execute(sa.delete(Job).where(Job.id == job.id))
        for row in reversed(rows):
            db.session.delete(row)
        db.session.commit()
        raise BrokerUnavailable(str(exc)) from exc
    except Unsure:
        db.session.rollback()
        return Enqueued(job, created=True, published=False)
    return Enqueued(job, created=True)


def _record(job: Job) -> None:
    """Commit the job's row (and the rows already flushed with it) in as few round trips as the
    database allows, keeping `job`'s values loaded: publishing and the answer read them, and a
    commit would expire them, so that each read would be a SELECT.

    A job without rows of its own is one INSERT, committed by itself (autocommit), unless the
    request already opened a transaction (a lookup before the enqueue). Raises IntegrityError
    when the job's `idempotency_key` is taken.
    """
    session = db.session()
    if not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    session.add(job)
    session.flush()
    session.expunge(job)
    session.commit()


def run_at(options: dict[str, Any]) -> datetime | None:
    """The absolute time of `apply_async`'s `countdown` or `eta`; None: at once."""
    if options.get("countdown") is not None:
        return utcnow() + timedelta(seconds=float(options["countdown"]))
    eta = options.get("eta")
    return eta if isinstance(eta, datetime) else None


def _settled(job: Job | None) -> Job | None:
    """`job` once its own request has decided its fate: None if that request removed it.

    A job another request has just recorded may still be publishing, and is removed again if
    the broker turns out to be down; a replay must not answer with it before that is decided.
    It waits (at most `PUBLISH_WINDOW` seconds after the job was recorded) while the row is
    `recorded`; a row still recorded after that is the relay's to publish, and will run.
    """
    while job is not None and job.state == "recorded":
        if (utcnow() - job.created_at).total_seconds() >= PUBLISH_WINDOW:
            break
        job_id = job.id
        time.sleep(0.05)
        db.session.rollback()  # a fresh snapshot: the other request commits meanwhile
        job = db.session.get(Job, job_id)
    return job


def _by_key(key: str, digest: str) -> Job | None:
    job = db.session.execute(db.select(Job).filter_by(idempotency_key=key)).scalar_one_or_none()
    if job is not None and job.request_fingerprint != digest:
        raise IdempotencyConflict(key)
    return job
