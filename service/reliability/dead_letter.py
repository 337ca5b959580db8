"""The dead-letter store: every task that failed for good, with what is needed to run it again.

`record` runs from the `task_failure` signal: in the pool child for an exception, in the
worker's main process for a hard time limit. Retries do not reach it (they are not failures),
so each row is a final failure: permanent, or transient with its retries exhausted. With
`acks_late` the failed message is acknowledged, so this row is the only copy left.

The exception's text and traceback are stored redacted (`service.redact`): they may quote a URL
with its password or token. The arguments are stored as they are, since a re-drive sends them
again; they are ids and plain values (no secrets), and the API redacts them when it answers.
"""

from __future__ import annotations

import logging
import traceback as tb
from collections.abc import Callable
from typing import Any

from celery import Task
from flask import Flask

from ..data.db import db
from ..data.models import DeadLetter, Job
from ..redact import redact

#: Task name -> what to do to the task's own rows when it is dead-lettered (mark an export
#: failed, say), run in the same transaction as the dead-letter row. Filled by `job_task`.
ON_DEAD_LETTER: dict[str, Callable[..., None]] = {}

log = logging.getLogger(__name__)


def record(
    app: Flask, task: Task, task_id: str, exc: BaseException, args: Any, kwargs: Any, einfo: Any
) -> None:
    """Store one final failure; never raises (a failure handler must not fail the worker)."""
    request = task.request if task.request.id == task_id else None
    delivery = (request.delivery_info if request else None) or {}
    retries = request.retries if request else 0
    trace = redact(str(einfo) if einfo else "".join(tb.format_exception(exc)))
    try:
        with app.app_context():
            db.session.add(
                DeadLetter(
                    task_id=task_id,
                    task_name=task.name,
                    queue=delivery.get("routing_key"),
                    args=list(args or ()),
                    kwargs=dict(kwargs or {}),
                    exception_type=type(exc).__name__,
                    exception_message=redact(str(exc))[:10_000],
                    traceback=trace[-20_000:],
                    attempts=retries + 1,
                    first_attempt_at=_enqueued_at(task_id),
                )
            )
            if task.name in ON_DEAD_LETTER:
                ON_DEAD_LETTER[task.name](*(args or ()), **(kwargs or {}))
            db.session.commit()
    except Exception:  # noqa: BLE001 - logged with the task's arguments instead
        log.exception("could not dead-letter %s[%s] args=%r", task.name, task_id, args)
    else:
        log.warning(
            "dead-lettered %s[%s] after %d attempt(s): %r", task.name, task_id, retries + 1, exc
        )


def _enqueued_at(task_id: str) -> Any:
    # Jobs from the API share their task's id; beat's and fan-out tasks have no job row.
    job = db.session.get(Job, task_id)
    return job.created_at if job is not None else None
