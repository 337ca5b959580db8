"""A job's state as the API reports it: the job's row, and Celery's state for it.

Celery answers PENDING for any id it has no record of, so it cannot tell an unknown job from a
waiting one; the `jobs` table can: a job is known if and only if its row exists. A failed job's
error is the exception's type and its redacted text: an exception may quote a URL with its
password or token.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.result import AsyncResult

from ..data.models import Job
from ..redact import redact
from .enqueue import BROKER_ERRORS

#: Celery state -> the state this API reports.
STATES = {
    "PENDING": "pending",
    "RECEIVED": "pending",
    "STARTED": "started",
    "PROGRESS": "progress",
    "RETRY": "retry",
    "SUCCESS": "success",
    "FAILURE": "failure",
    "REVOKED": "failure",
}


class StateUnavailable(Exception):
    """The result store could not be reached."""


def job_status(job: Job, celery_app: Celery) -> dict[str, Any]:
    """The job's state, readiness, value, progress and error."""
    result = AsyncResult(job.id, app=celery_app)
    try:
        celery_state, info = result.state, result.info
    except BROKER_ERRORS as exc:
        raise StateUnavailable(str(exc)) from exc
    state = STATES.get(celery_state, celery_state.lower())
    return {
        "job_id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        "state": state,
        "ready": state in ("success", "failure"),
        "successful": state == "success",
        "value": info if state == "success" else None,
        "progress": info if state == "progress" else None,
        "error": _error(celery_state, info),
        "created_at": job.created_at.isoformat(),
    }


def _error(state: str, info: Any) -> str | None:
    if state == "REVOKED":
        return "revoked"
    if state in ("FAILURE", "RETRY") and isinstance(info, BaseException):
        return f"{type(info).__name__}: {redact(str(info))}"
    return None
