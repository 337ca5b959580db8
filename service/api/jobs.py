"""Jobs: one enqueue endpoint per kind of work, the status of any job by id, and a listing.

Enqueueing answers 202 at once with the job id and its status URL; it never waits for the job.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request

from .. import budget
from ..auth.callers import ENQUEUE, OPERATE, READ
from ..data.db import db, utcnow
from ..data.models import Export, Invoice, Job, User, WebhookDelivery, WebhookEndpoint
from ..jobs import lifecycle
from ..jobs.enqueue import JobRequest
from ..jobs.state import API_STATES, job_status, job_summary
from ..tasks import examples, exports, invoices, notify, periodic, webhooks
from .accept import accept, idempotency_key
from .access import caller, requires
from .errors import bad_request, not_found, parse_body
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
#: Jobs per page of `GET /jobs`: by default, and at most.
DEFAULT_PAGE, MAX_PAGE = 50, 200


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
    if job is None or not _visible(job):
        raise not_found(f"job {job_id}")
    return jsonify(job_status(job, current_app.extensions["celery"]))


@bp.get("")
@requires(READ)
def list_jobs() -> Response:
    """The caller's jobs (an operator's: everyone's), newest first, a page at a time.

    Filters: `state` (a `job_state`, or one of the API's states), `kind`, `since` (ISO 8601
    with a zone: created at or after). `cursor` is the previous page's `next_cursor`.
    """
    limit = _limit(request.args.get("limit"))
    query = sa.select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if not caller().may(OPERATE):
        query = query.where(Job.owner == caller().owner)
    if (state := request.args.get("state")) is not None:
        query = query.where(Job.state.in_(_job_states(state)))
    if (kind := request.args.get("kind")) is not None:
        query = query.where(Job.kind == kind)
    if (since := request.args.get("since")) is not None:
        query = query.where(Job.created_at >= _since(since))
    if (cursor := request.args.get("cursor")) is not None:
        created_at, job_id = _decode_cursor(cursor)
        query = query.where(
            sa.or_(
                Job.created_at < created_at,
                sa.and_(Job.created_at == created_at, Job.id < job_id),
            )
        )
    jobs = db.session.scalars(query).all()
    page, more = jobs[:limit], len(jobs) > limit
    return jsonify(
        {
            "items": [job_summary(job) for job in page],
            "next_cursor": _encode_cursor(page[-1]) if more else None,
        }
    )


def _visible(job: Job) -> bool:
    # another caller's job is answered as if it did not exist, unless the caller operates
    return job.owner == caller().owner or caller().may(OPERATE)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= MAX_PAGE):
        raise bad_request(f"limit: must be an integer from 1 to {MAX_PAGE}", field="limit")
    return int(raw)


def _job_states(raw: str) -> list[str]:
    if raw in lifecycle.STATES:
        return [raw]
    states = [s for s, api in API_STATES.items() if api == raw]
    if not states:
        names = ", ".join(dict.fromkeys([*lifecycle.STATES, *API_STATES.values()]))
        raise bad_request(f"state: must be one of {names}", field="state")
    return states


def _since(raw: str) -> datetime:
    try:
        since = datetime.fromisoformat(raw)
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise bad_request("since: must be an ISO 8601 time with a zone", field="since")
    return since.astimezone(UTC)


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = text.split("|")
        created_at = datetime.fromisoformat(created)
        uuid.UUID(job_id)
        if created_at.tzinfo is None:
            raise ValueError(created)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise bad_request("cursor: not a cursor this API gave", field="cursor") from None
    return created_at.astimezone(UTC), job_id


def celery_conf() -> Any:
    """The Celery configuration of the current app."""
    return current_app.extensions["celery"].conf
