"""The rows jobs work on: users, invoices, webhook endpoints and deliveries, exports.

Creating a row is synchronous (201); the slow work on it is a job (see `api.jobs`).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, send_file

from ..auth.callers import ENQUEUE, OPERATE, READ
from ..data.db import db, utcnow
from ..data.models import Export, Invoice, User, WebhookDelivery, WebhookEndpoint
from ..outbound.egress import EgressRefused, HostUnresolved, vet_url
from ..reliability.retry import TransientError
from .access import requires
from .errors import ApiError, bad_request, not_found, parse_body
from .schemas import NewInvoice, NewUser, NewWebhookEndpoint

bp = Blueprint("resources", __name__)


def _get(model: type[db.Model], row_id: int, what: str) -> db.Model:  # type: ignore[name-defined]
    row = db.session.get(model, row_id)
    if row is None:
        raise not_found(f"{what} {row_id}")
    return row


@bp.post("/users")
@requires(ENQUEUE)
def create_user() -> tuple[Response, int]:
    """201 with the user; 409 when the (lower-cased) email is taken, also by a concurrent create."""
    body = parse_body(NewUser)
    taken = ApiError(409, "conflict", f"email: a user with {body.email} exists", field="email")
    if db.session.execute(db.select(User.id).filter_by(email=body.email)).first():
        raise taken
    user = User(
        email=body.email, name=body.name, trial_ends_at=utcnow() + timedelta(days=body.trial_days)
    )
    db.session.add(user)
    try:
        db.session.commit()
    except sa.exc.IntegrityError:  # another request created the same email since the check
        db.session.rollback()
        raise taken from None
    return jsonify(user.to_dict()), 201


@bp.get("/users/<int:user_id>")
@requires(READ)
def get_user(user_id: int) -> Response:
    return jsonify(_get(User, user_id, "user").to_dict())


@bp.post("/invoices")
@requires(ENQUEUE)
def create_invoice() -> tuple[Response, int]:
    body = parse_body(NewInvoice)
    if db.session.get(User, body.user_id) is None:
        raise bad_request(f"user_id: no user with id {body.user_id}", "user_id")
    lines = [line.model_dump() for line in body.lines]
    invoice = Invoice(
        number="pending",
        user_id=body.user_id,
        currency=body.currency,
        lines=lines,
        total_cents=body.total_cents,
    )
    db.session.add(invoice)
    db.session.flush()
    invoice.number = f"INV-{utcnow():%Y}-{invoice.id:06d}"
    db.session.commit()
    return jsonify(invoice.to_dict()), 201


@bp.get("/invoices/<int:invoice_id>")
@requires(READ)
def get_invoice(invoice_id: int) -> Response:
    return jsonify(_get(Invoice, invoice_id, "invoice").to_dict())


@bp.get("/invoices/<int:invoice_id>/pdf")
@requires(READ)
def download_invoice(invoice_id: int) -> Response:
    invoice = _get(Invoice, invoice_id, "invoice")
    return _send(invoice.pdf_path, "application/pdf", f"{invoice.number}.pdf", "invoice PDF")


@bp.post("/webhook-endpoints")
@requires(OPERATE)
def create_webhook_endpoint() -> tuple[Response, int]:
    body = parse_body(NewWebhookEndpoint)
    try:
        vet_url(str(body.url), current_app.config["WEBHOOK_ALLOWED_NETWORKS"])
    except (HostUnresolved, TransientError):
        pass  # a name that does not resolve yet: every delivery vets the URL again
    except EgressRefused as exc:
        raise ApiError(422, "url_refused", f"url: {exc}", field="url") from None
    endpoint = WebhookEndpoint(url=str(body.url), secret=body.secret or secrets.token_hex(32))
    db.session.add(endpoint)
    db.session.commit()
    # The secret is shown once, at creation; receivers need it to verify signatures.
    return jsonify({**endpoint.to_dict(), "secret": endpoint.secret}), 201


@bp.get("/webhook-deliveries/<int:delivery_id>")
@requires(READ)
def get_webhook_delivery(delivery_id: int) -> Response:
    return jsonify(_get(WebhookDelivery, delivery_id, "webhook delivery").to_dict())


@bp.get("/exports/<int:export_id>")
@requires(READ)
def get_export(export_id: int) -> Response:
    return jsonify(_get(Export, export_id, "export").to_dict())


@bp.get("/exports/<int:export_id>/download")
@requires(OPERATE)
def download_export(export_id: int) -> Response:
    export = _get(Export, export_id, "export")
    path = export.path if export.status == "done" else None
    return _send(path, "text/csv", f"export-{export.id}-{export.table_name}.csv", "export file")


def _send(path: str | None, mimetype: str, name: str, what: str) -> Response:
    if path is None:
        raise ApiError(409, "not_ready", f"the {what} is not ready yet")
    storage = Path(current_app.config["STORAGE_DIR"]).resolve()
    file = Path(path).resolve()
    if not file.is_relative_to(storage) or not file.is_file():
        raise ApiError(410, "gone", f"the {what} is no longer in storage")
    return send_file(file, mimetype=mimetype, as_attachment=True, download_name=name)
