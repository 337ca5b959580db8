"""Dead letters: list the tasks that failed for good, inspect one, and send it again.

A re-drive publishes the same task with the same arguments. Idempotency keys derive from the
arguments, so work that did complete before the failure is not repeated. Re-driving the same
dead letter twice returns the first re-drive's job. Answers are redacted (`service.redact`),
including rows stored before dead letters were redacted when written.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request

from ..auth.callers import OPERATE
from ..data.db import db, utcnow
from ..data.models import DeadLetter
from ..jobs.enqueue import JobRequest
from ..redact import redact_json
from .accept import accept
from .access import caller, requires
from .errors import ApiError, bad_request, not_found
from .schemas import MAX_ID

bp = Blueprint("dead_letters", __name__, url_prefix="/dead-letters")

MAX_PAGE = 200


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() and int() also take "²" and "٣"
    digits = raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))
    if not digits or not low <= int(raw) <= high:
        raise bad_request(f"{name}: must be an integer from {low} to {high}", field=name)
    return int(raw)


@bp.get("")
@requires(OPERATE)
def list_dead_letters() -> Response:
    """Newest first; filter with `?task=<name>`, page with `?limit=&before=<id>`."""
    limit = _int_arg("limit", 50, 1, MAX_PAGE)
    before = _int_arg("before", 0, 0, MAX_ID)
    query = sa.select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if task := request.args.get("task"):
        query = query.where(DeadLetter.task_name == task)
    if before:
        query = query.where(DeadLetter.id < before)
    letters = db.session.scalars(query).all()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(DeadLetter))
    return jsonify({"items": [redact_json(d.to_dict()) for d in letters], "total": total})


@bp.get("/<int:letter_id>")
@requires(OPERATE)
def get_dead_letter(letter_id: int) -> Response:
    letter = db.session.get(DeadLetter, letter_id)
    if letter is None:
        raise not_found(f"dead letter {letter_id}")
    return jsonify(redact_json(letter.to_dict(full=True)))


@bp.post("/<int:letter_id>/redrive")
@requires(OPERATE)
def redrive(letter_id: int) -> tuple[Response, int]:
    """Publish the task again; 202 with the new job, like any enqueue."""
    letter = db.session.get(DeadLetter, letter_id)
    if letter is None:
        raise not_found(f"dead letter {letter_id}")
    task = current_app.extensions["celery"].tasks.get(letter.task_name)
    if task is None:
        raise ApiError(409, "unknown_task", f"task {letter.task_name} is no longer registered")
    job = JobRequest(
        f"redrive.{letter.task_name}",
        task,
        tuple(letter.args),
        kwargs=letter.kwargs,
        owner=caller().owner,
    )
    response, status = accept(job, body={"dead_letter": letter.id}, key=f"redrive:{letter.id}")
    if letter.redriven_at is None:
        letter.redriven_at = utcnow()
        letter.redrive_job_id = response.get_json()["job_id"]
        db.session.commit()
    return response, status
