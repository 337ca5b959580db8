"""Jobs: one enqueue endpoint per kind of work, and the status of any job by id.

Enqueueing answers 202 at once with the job id and its status URL; it never waits for the job.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery.result import AsyncResult
from flask import Blueprint, Response, current_app, jsonify, request, url_for

from ..config import longest_time_limit
from ..db import db, utcnow
from ..enqueue import (
    BROKER_ERRORS,
    BrokerUnavailable,
    IdempotencyConflict,
    JobRequest,
    enqueue,
)
from ..models import Export, Invoice, Job, User, WebhookDelivery, WebhookEndpoint
from ..tasks import examples, exports, invoices, notify, periodic, webhooks
from .errors import ApiError, bad_request, not_found, parse_body
from .schemas import (
    AddJob,
    ExportJob,
    InvoicePdfJob,
    PeriodicJob,
    Schedule,
    WebhookJob,
    WelcomeEmailJob,
)

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 190
#: Client keys are stored under this prefix, apart from the keys the API makes itself
#: (`redrive:<id>`), so a client cannot take over one of those.
CLIENT_KEY_PREFIX = "client:"

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


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise bad_request(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            field=IDEMPOTENCY_HEADER,
        )
    return CLIENT_KEY_PREFIX + key


def _require(model: type[Any], row_id: int, field: str) -> Any:
    row = db.session.get(model, row_id)
    if row is None:
        raise bad_request(f"{field}: no {model.__tablename__.rstrip('s')} with id {row_id}", field)
    return row


def max_delay() -> float:
    """The longest countdown a job may have: Redis hands a message held longer than the
    visibility timeout to a second worker, so delay plus run time must stay within it."""
    conf = current_app.extensions["celery"].conf
    return float(conf.broker_transport_options["visibility_timeout"]) - longest_time_limit(conf)


def _accept(req: JobRequest, body: Schedule) -> tuple[Response, int]:
    """Enqueue with the body's schedule, honouring the request's Idempotency-Key."""
    delay = body.delay_seconds(utcnow())
    if delay > max_delay():
        field = "countdown" if body.countdown is not None else "eta"
        raise bad_request(
            f"{field}: at most {max_delay():.0f} seconds ahead; the broker would deliver a job "
            "held longer twice (see visibility_timeout)",
            field=field,
        )
    req.options = body.options()
    return accept(req, body.model_dump(mode="json"), _idempotency_key())


def accept(req: JobRequest, body: Any, key: str | None) -> tuple[Response, int]:
    """Enqueue and answer 202 with the job, or the job already recorded under `key`."""
    try:
        result = enqueue(req, body, key)
    except IdempotencyConflict:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"{IDEMPOTENCY_HEADER} was already used for a different request",
        ) from None
    except BrokerUnavailable:
        raise ApiError(
            503, "broker_unavailable", "the job queue is unreachable; retry later"
        ) from None
    job = result.job
    response = jsonify(
        {"job_id": job.id, "status_url": url_for("jobs.status", job_id=job.id), "kind": job.kind}
    )
    response.headers["Location"] = url_for("jobs.status", job_id=job.id)
    if not result.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 202


@bp.post("/add")
def add() -> tuple[Response, int]:
    body = parse_body(AddJob)
    return _accept(JobRequest("add", examples.add_together, (body.a, body.b)), body)


@bp.post("/welcome-email")
def welcome_email() -> tuple[Response, int]:
    body = parse_body(WelcomeEmailJob)
    _require(User, body.user_id, "user_id")
    return _accept(JobRequest("welcome_email", notify.send_welcome_email, (body.user_id,)), body)


@bp.post("/invoice-pdf")
def invoice_pdf() -> tuple[Response, int]:
    body = parse_body(InvoicePdfJob)
    _require(Invoice, body.invoice_id, "invoice_id")
    return _accept(JobRequest("invoice_pdf", invoices.generate_pdf, (body.invoice_id,)), body)


@bp.post("/export")
def export() -> tuple[Response, int]:
    body = parse_body(ExportJob)

    def new_export(job_id: str) -> Export:
        return Export(table_name=body.table, job_id=job_id)

    return _accept(JobRequest("export", exports.export_table, new_row=new_export), body)


@bp.post("/webhook")
def webhook() -> tuple[Response, int]:
    body = parse_body(WebhookJob)
    _require(WebhookEndpoint, body.endpoint_id, "endpoint_id")

    def new_delivery(job_id: str) -> WebhookDelivery:
        return WebhookDelivery(
            event_id=str(uuid.uuid4()),
            endpoint_id=body.endpoint_id,
            event_type=body.event_type,
            payload=body.payload,
        )

    return _accept(JobRequest("webhook", webhooks.deliver, new_row=new_delivery), body)


@bp.post("/periodic")
def run_periodic() -> tuple[Response, int]:
    body = parse_body(PeriodicJob)
    task = {
        "expire_trials": periodic.expire_trials,
        "queue_trial_reminders": periodic.queue_trial_reminders,
    }[body.task]
    return _accept(JobRequest(f"periodic.{body.task}", task), body)


@bp.get("/<job_id>")
def status(job_id: str) -> Response:
    """Report a job's state; an id this API never issued is a 404.

    Celery answers PENDING for any id it has no record of, so it cannot tell an unknown job
    from a waiting one. The `jobs` table can: a job is known if and only if a row exists.
    """
    job = db.session.get(Job, job_id)
    if job is None:
        raise not_found(f"job {job_id}")
    result = AsyncResult(job.id, app=current_app.extensions["celery"])
    try:
        celery_state, info = result.state, result.info
    except BROKER_ERRORS:
        raise ApiError(
            503, "result_backend_unavailable", "job states are unreachable; retry later"
        ) from None
    state = STATES.get(celery_state, celery_state.lower())
    return jsonify(
        {
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
    )


def _error(state: str, info: Any) -> str | None:
    if state == "REVOKED":
        return "revoked"
    if state in ("FAILURE", "RETRY") and isinstance(info, BaseException):
        return f"{type(info).__name__}: {info}"
    return None
