"""A job's row follows its task: started, retrying, succeeded, failed or dead-lettered.

`service.signals` calls these from Celery's task signals: in the pool child that runs the task
(`task_prerun`, `task_retry`, `task_postrun`), and in the worker's main process for a hard time
limit (`task_failure`). Each write is one short transaction of its own, after the task's own
transaction has committed or rolled back, so a failure to write the row is logged and never
fails the task or undoes its effect. Only jobs enqueued through the API have a row (the task id
is the job id); any other task (beat's runs, a fan-out's sub-tasks) updates nothing, and, since
its message says so (`JOB_HEADER`, stamped on every message this code publishes), does not even
look for a row.

A final state is final: a redelivered message of a finished job (the ledger makes it a no-op)
does not move its row back to `started`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from flask import Flask

from ..data.db import UTCDateTime, db, utcnow
from ..data.models import DeadLetter, Job
from ..redact import redact

log = logging.getLogger(__name__)

#: Every state of a job's row, in lifecycle order.
STATES = ("recorded", "queued", "started", "retrying", "succeeded", "failed", "dead_lettered")
#: States a job never leaves.
FINAL = ("succeeded", "failed", "dead_lettered")
#: Longest `last_error` kept, characters.
MAX_ERROR = 2000
#: Largest return value kept whole in `result_summary`, bytes of JSON.
MAX_VALUE_BYTES = 4096
#: The message header that says whether its task id is a job's (True: `outbox` published it
#: for a row) or not (False: anything else this code publishes). A retry carries it over, as
#: Celery does with custom headers. A message without it comes from a publisher older than the
#: header: its row, if any, is looked for.
JOB_HEADER = "flask_celery_job"


def stamp_not_a_job(headers: dict[str, Any] | None) -> None:
    """Mark an outgoing message as no job's, unless its publisher said it is one."""
    if headers is not None:
        headers.setdefault(JOB_HEADER, False)


def may_have_row(request: Any) -> bool:
    """Whether the task running under `request` (its context) may be a job with a row."""
    return getattr(request, JOB_HEADER, None) is not False


def started(app: Flask, task_id: str) -> bool | None:
    """The task's body is about to run: one more attempt (a retry or a redelivery).

    False when the task has no row to move (not a job, or a job already final): nothing will
    move it on this run either, since a job's row is written before its message. None when the
    write failed.
    """
    now = utcnow()
    return _update(
        app,
        task_id,
        state="started",
        started_at=now,
        queued_at=sa.func.coalesce(Job.queued_at, sa.literal(now, UTCDateTime())),
        attempts=Job.attempts + 1,
    )


def retrying(app: Flask, task_id: str, reason: Any) -> None:
    """The task raised a transient failure and will run again."""
    # `reason` is Celery's Retry, which carries the failure itself when it was given one
    cause = getattr(reason, "exc", None)
    _update(app, task_id, state="retrying", last_error=describe(cause or reason))


def succeeded(app: Flask, task_id: str, value: Any) -> None:
    """The task returned `value` and its transaction committed (`last_error` stays: a retried
    job's reason to retry)."""
    _update(
        app,
        task_id,
        state="succeeded",
        finished_at=utcnow(),
        result_summary=summarize(value),
    )


def failed(app: Flask, task_id: str, exc: BaseException) -> None:
    """The task failed for good: `dead_lettered` when its dead letter was stored, else `failed`.

    Runs after `service.reliability.dead_letter.record`, which stores the dead letter in a
    transaction of its own.
    """
    try:
        with app.app_context(), db.engine.begin() as conn:
            lettered = conn.scalar(sa.select(sa.func.count()).where(DeadLetter.task_id == task_id))
    except Exception:  # noqa: BLE001 - the state write below still says it failed
        log.warning("could not look up the dead letter of job %s", task_id, exc_info=True)
        lettered = 0
    _update(
        app,
        task_id,
        state="dead_lettered" if lettered else "failed",
        finished_at=utcnow(),
        last_error=describe(exc),
    )


def settle_dead_letters(app: Flask) -> int:
    """`failed` -> `dead_lettered` for jobs whose dead letter was stored later (it waited in
    Redis while the database was down); how many. Never raises."""
    try:
        with app.app_context(), db.engine.begin() as conn:
            lettered = sa.select(DeadLetter.task_id)
            result = conn.execute(
                sa.update(Job)
                .where(Job.state == "failed", Job.id.in_(lettered))
                .values(state="dead_lettered")
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount or 0)
    except Exception:  # noqa: BLE001 - the next call tries again
        log.warning("could not mark dead-lettered jobs", exc_info=True)
        return 0


def describe(exc: Any) -> str:
    """`Type: message` of an exception, redacted and truncated."""
    if isinstance(exc, BaseException):
        text = f"{type(exc).__name__}: {redact(str(exc))}"
    else:
        text = redact(str(exc))
    return text[:MAX_ERROR]


def summarize(value: Any) -> dict[str, Any]:
    """`{"value": value}` when it is JSON of at most MAX_VALUE_BYTES, else its type and size."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return {"type": type(value).__name__, "bytes": None}
    if len(text.encode()) > MAX_VALUE_BYTES:
        return {"type": type(value).__name__, "bytes": len(text.encode())}
    return {"value": value}


def _update(app: Flask, task_id: str, **values: Any) -> bool | None:
    """Set `values` on the job's row unless it is in a final state: whether a row moved, None
    when the write failed; never raises."""
    try:
        with app.app_context(), db.engine.begin() as conn:
            result = conn.execute(
                sa.update(Job)
                .where(Job.id == task_id, Job.state.not_in(FINAL))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)
    except Exception:  # noqa: BLE001 - the task's outcome stands; its row is behind
        log.warning("could not record job %s as %s", task_id, values.get("state"), exc_info=True)
        return None
