"""Jobs: one enqueue endpoint per kind of work, and the status of any job by id.

Enqueueing answers 202 at once with the job id and its status URL; it never waits for the job.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from .. import budget
from ..auth.callers import ENQUEUE, OPERATE, READ
from ..data.db import db, utcnow
from ..data.models import Export, Invoice, Job, User, WebhookDelivery, WebhookEndpoint
from ..jobs.enqueue import JobRequest
from ..jobs.state import StateUnavailable, job_status
from ..tasks import examples, exports, invoices, notify, periodic, webhooks
from .accept import accept, idempotency_key
from .access import caller, requires
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


def _require(model: type[Any], row_id: int, field: str) -> Any:
    row = db.session.get(model, row_id)
    if row is None:
        raise bad_request(f"{field}: no {model.__tablename__.rstrip('s')} with id {row_id}", field)
    return row


def _accept(req: JobRequest, body: Schedule) -> tuple[Response, int]:
    """Enqueue with the body's schedule, honouring the request's Idempotency-Key."""
    delay, longest = body.delay_seconds(utcnow()), budget.max_delay(celery_conf())
    if delay > longest:
        field = "countdown" if body.countdown is not None else "eta"
        raise bad_request(
            f"{field}: at most {longest:.0f} seconds ahead; the broker would deliver a job "
            "held longer twice (see visibility_timeout)",
            field=field,
        )
    req.options = body.options()
    req.owner = caller().owner
    return accept(req, body.model_dump(mode="json"), idempotency_key())


@bp.post("/add")
@requires(ENQUEUE)
def add() -> tuple[Response, int]:
    body = parse_body(AddJob)
    return _accept(JobRequest("add", examples.add_together, (body.a, body.b)), body)


@bp.post("/welcome-email")
@requires(ENQUEUE)
def welcome_email() -> tuple[Response, int]:
    body = parse_body(WelcomeEmailJob)
    _require(User, body.user_id, "user_id")
    return _accept(JobRequest("welcome_email", notify.send_welcome_email, (body.user_id,)), body)


@bp.post("/invoice-pdf")
@requires(ENQUEUE)
def invoice_pdf() -> tuple[Response, int]:
    body = parse_body(InvoicePdfJob)
    _require(Invoice, body.invoice_id, "invoice_id")
    return _accept(JobRequest("invoice_pdf", invoices.generate_pdf, (body.invoice_id,)), body)


@bp.post("/export")
@requires(ENQUEUE)
def export() -> tuple[Response, int]:
    body = parse_body(ExportJob)

    def new_export(job_id: str) -> Export:
        return Export(table_name=body.table, job_id=job_id)

    return _accept(JobRequest("export", exports.export_table, new_row=new_export), body)


@bp.post("/webhook")
@requires(ENQUEUE)
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
@requires(OPERATE)
def run_periodic() -> tuple[Response, int]:
    body = parse_body(PeriodicJob)
    task = {
        "expire_trials": periodic.expire_trials,
        "queue_trial_reminders": periodic.queue_trial_reminders,
    }[body.task]
    return _accept(JobRequest(f"periodic.{body.task}", task), body)


# Job ids are UUIDs (`str(uuid4())`): anything else is a 404, and GET /jobs/add no route.
@bp.get("/<uuid:job_id>")
@requires(READ)
def status(job_id: uuid.UUID) -> Response:
    """Report a job's state; an id this API never issued is a 404."""
    job = db.session.get(Job, str(job_id))
    # another caller's job is answered as if it did not exist, unless the caller operates
    if job is None or (job.owner != caller().owner and not caller().may(OPERATE)):
        raise not_found(f"job {job_id}")
    try:
        return jsonify(job_status(job, current_app.extensions["celery"]))
    except StateUnavailable:
        raise ApiError(
            503, "result_backend_unavailable", "job states are unreachable; retry later"
        ) from None


def celery_conf() -> Any:
    """The Celery configuration of the current app."""
    return current_app.extensions["celery"].conf
