"""The rows the tasks read and write: users, notifications, invoices, exports, webhooks, jobs.

Every table that records a side effect carries a unique key for it (`idempotency_key`,
`event_id`, ...), so a task that runs twice finds the first run's row instead of repeating
the effect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from .db import UTCDateTime, db, utcnow

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class User(db.Model):  # type: ignore[name-defined,misc]
    """A customer account; trial users expire nightly and get a reminder before that.

    Emails are stored lower-cased, so the unique constraint holds whatever case they came in.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    plan: Mapped[str] = mapped_column(sa.String(20), default="trial", index=True)
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    trial_expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @validates("email")
    def _lower_case(self, _key: str, email: str) -> str:
        return email.lower()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "plan": self.plan,
            "trial_ends_at": _iso(self.trial_ends_at),
            "trial_expired_at": _iso(self.trial_expired_at),
        }


class EmailLog(db.Model):  # type: ignore[name-defined,misc]
    """One row per mail handed to the SMTP server; the key makes a resend a no-op."""

    __tablename__ = "email_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    recipient: Mapped[str] = mapped_column(sa.String(320))
    subject: Mapped[str] = mapped_column(sa.String(300))
    message_id: Mapped[str] = mapped_column(sa.String(300))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Invoice(db.Model):  # type: ignore[name-defined,misc]
    """An invoice and its lines; `pdf_path` is set once its PDF has been rendered."""

    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(40), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    total_cents: Mapped[int] = mapped_column(sa.BigInteger)
    pdf_path: Mapped[str | None] = mapped_column(sa.String(500))
    rendered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "user_id": self.user_id,
            "currency": self.currency,
            "lines": self.lines,
            "total_cents": self.total_cents,
            "pdf_ready": self.pdf_path is not None,
            "rendered_at": _iso(self.rendered_at),
        }


class Export(db.Model):  # type: ignore[name-defined,misc]
    """A CSV export of one table; the file is served by the API once `status` is done."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    table_name: Mapped[str] = mapped_column(sa.String(40))
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")
    row_count: Mapped[int | None] = mapped_column(sa.Integer)
    path: Mapped[str | None] = mapped_column(sa.String(500))
    job_id: Mapped[str | None] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "table": self.table_name,
            "status": self.status,
            "row_count": self.row_count,
            "job_id": self.job_id,
            "download_url": f"/exports/{self.id}/download" if self.status == "done" else None,
            "finished_at": _iso(self.finished_at),
        }


class WebhookEndpoint(db.Model):  # type: ignore[name-defined,misc]
    """A receiver URL and the secret its deliveries are signed with."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(2000))
    secret: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url}


class WebhookDelivery(db.Model):  # type: ignore[name-defined,misc]
    """One event for one endpoint; `event_id` is sent along so receivers can deduplicate."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_endpoints.id"), index=True)
    event_type: Mapped[str] = mapped_column(sa.String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    response_status: Mapped[int | None] = mapped_column(sa.Integer)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    endpoint: Mapped[WebhookEndpoint] = relationship()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "endpoint_id": self.endpoint_id,
            "event_type": self.event_type,
            "status": self.status,
            "attempts": self.attempts,
            "response_status": self.response_status,
            "delivered_at": _iso(self.delivered_at),
        }


class Job(db.Model):  # type: ignore[name-defined,misc]
    """Every job the API enqueued: the source of truth for its state, and its outbox entry.

    `idempotency_key` holds the client's `Idempotency-Key` header under a unique constraint:
    a retried POST finds this row and gets the same job back. A row in state `recorded` is a
    message not yet known to be published: it carries what publishing needs (task, arguments,
    an absolute `eta`), so that the outbox relay can publish it if the request could not
    (`service.jobs.outbox`). The worker then moves `state` along the task's lifecycle
    (`service.jobs.lifecycle`); the result backend only adds live progress.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_state_created_at", "state", "created_at"),
        sa.Index("ix_jobs_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    task_name: Mapped[str] = mapped_column(sa.String(100))
    queue: Mapped[str] = mapped_column(sa.String(40))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    request_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    #: The caller that enqueued it (`service.auth.Caller.owner`); only it, or an operator, may
    #: read the job. None for jobs recorded before callers were.
    owner: Mapped[str | None] = mapped_column(sa.String(80), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: recorded -> queued -> started -> (retrying -> started ...) -> succeeded | failed |
    #: dead_lettered (`service.jobs.lifecycle.STATES`).
    state: Mapped[str] = mapped_column(sa.String(20), default="recorded", server_default="queued")
    #: What publishing needs, for the outbox relay: positional and keyword arguments, and the
    #: time the job may run at (`eta`, absolute; None: at once).
    task_args: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    task_kwargs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    eta: Mapped[datetime | None] = mapped_column(UTCDateTime())
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Runs started so far (a retry or a redelivery is one more).
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    #: The last failure, `Type: message`, redacted and truncated.
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    #: `{"value": ...}` for a small JSON return value, else `{"type", "bytes"}`.
    result_summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ApiKey(db.Model):  # type: ignore[name-defined,misc]
    """An API key made with `flask api-keys create`: only the SHA-256 of its token is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    token_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class LedgerEntry(db.Model):  # type: ignore[name-defined,misc]
    """The idempotency ledger: one row per effect that has happened, under a unique key.

    Written in the same transaction as the effect's own rows (see
    `service.reliability.idempotency`), so either both are there or neither is.
    """

    __tablename__ = "task_ledger"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    task_name: Mapped[str] = mapped_column(sa.String(100))
    task_id: Mapped[str | None] = mapped_column(sa.String(36))
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeadLetter(db.Model):  # type: ignore[name-defined,misc]
    """A task that failed for good: permanently, or after its last retry."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(sa.String(36), index=True)
    task_name: Mapped[str] = mapped_column(sa.String(100), index=True)
    queue: Mapped[str | None] = mapped_column(sa.String(40))
    args: Mapped[list[Any]] = mapped_column(JSON)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON)
    exception_type: Mapped[str] = mapped_column(sa.String(200))
    exception_message: Mapped[str] = mapped_column(sa.Text)
    traceback: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    redriven_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    redrive_job_id: Mapped[str | None] = mapped_column(sa.String(36))

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "task_id": self.task_id,
            "task_name": self.task_name,
            "queue": self.queue,
            "args": self.args,
            "kwargs": self.kwargs,
            "exception": f"{self.exception_type}: {self.exception_message}",
            "attempts": self.attempts,
            "first_attempt_at": _iso(self.first_attempt_at),
            "failed_at": _iso(self.failed_at),
            "redriven_at": _iso(self.redriven_at),
            "redrive_job_id": self.redrive_job_id,
        }
        if full:
            out["traceback"] = self.traceback
        return out
