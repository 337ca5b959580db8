"""A job's state as the API reports it: the job's row first, the result backend for progress.

The row (`service.jobs.lifecycle`) knows every job's state, its times, attempts, last error and
a summary of its return value, for as long as the row is kept. The result backend adds what
only it has while a task runs: an export's `progress`. It is read only for a job that has not
finished, and if it cannot be reached the row answers alone; an expired result never turns a
finished job back into `pending`. Rows recorded before the lifecycle was (state `queued`,
never started) still take their state from the backend, as they did.

`state` keeps the API's vocabulary; `job_state` is the row's own:

| job_state | state |
|---|---|
| recorded, queued | pending |
| started | started, or progress while an export reports it |
| retrying | retry |
| succeeded | success |
| failed, dead_lettered | failure |
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from ..data.models import Job
from .lifecycle import describe

log = logging.getLogger(__name__)

#: The row's state -> the state this API reports.
API_STATES = {
    "recorded": "pending",
    "queued": "pending",
    "started": "started",
    "retrying": "retry",
    "succeeded": "success",
    "failed": "failure",
    "dead_lettered": "failure",
}
#: Celery's state -> the state this API reports, for rows that predate the lifecycle.
CELERY_STATES = {
    "PENDING": "pending",
    "RECEIVED": "pending",
    "STARTED": "started",
    "PROGRESS": "progress",
    "RETRY": "retry",
    "SUCCESS": "success",
    "FAILURE": "failure",
    "REVOKED": "failure",
}


def job_status(job: Job, celery_app: Celery) -> dict[str, Any]:
    """The job's state, readiness, value, progress, error, and its row's lifecycle."""
    state, progress, value = API_STATES.get(job.state, "pending"), None, None
    error = job.last_error
    summary = job.result_summary or {}
    if job.state == "succeeded":
        value = summary.get("value")
    elif job.state in ("recorded", "queued", "started", "retrying"):
        backend_state, info = _backend(job.id, celery_app)
        if backend_state == "PROGRESS" and job.state == "started":
            state, progress = "progress", info
        elif job.state == "queued" and job.started_at is None and backend_state != "PENDING":
            # a row from before the lifecycle: the backend is all there is
            state = CELERY_STATES.get(backend_state, backend_state.lower())
            value = info if state == "success" else None
            progress = info if state == "progress" else None
            error = describe(info) if isinstance(info, BaseException) else None
    return {
        "job_id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        "state": state,
        "ready": state in ("success", "failure"),
        "successful": state == "success",
        "value": value,
        "progress": progress,
        "error": error if state in ("retry", "failure") else None,
        "created_at": job.created_at.isoformat(),
        "job_state": job.state,
        "queued_at": _iso(job.queued_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "attempts": job.attempts,
        "result_summary": job.result_summary,
    }


def job_summary(job: Job) -> dict[str, Any]:
    """What a listing shows of a job: its row only (no result backend)."""
    return {
        "job_id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        "state": API_STATES.get(job.state, "pending"),
        "job_state": job.state,
        "created_at": job.created_at.isoformat(),
        "queued_at": _iso(job.queued_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "attempts": job.attempts,
        "error": job.last_error,
    }


def _backend(job_id: str, celery_app: Celery) -> tuple[str, Any]:
    """Celery's state and info for the job; PENDING when the backend does not answer."""
    result = AsyncResult(job_id, app=celery_app)
    try:
        return str(result.state), result.info
    except Exception as exc:  # noqa: BLE001 - the row answers without the live extras
        log.warning("result backend unreachable for job %s: %s", job_id, exc)
        return "PENDING", None


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
