"""Scheduled work run by beat: nightly trial expiry and the hourly trial-ending reminders.

Both are safe to run twice for the same tick: expiry is one conditional UPDATE, and each
reminder carries its own idempotency key (see `notify.send_trial_reminder`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from celery import shared_task
from flask import current_app

from ..db import db, utcnow
from ..models import EmailLog, User
from .notify import send_trial_reminder


@shared_task(name="periodic.expire_trials")
def expire_trials() -> dict[str, Any]:
    """Move every trial whose end has passed to the `expired` plan."""
    now = utcnow()
    result = db.session.execute(
        sa.update(User)
        .where(User.plan == "trial", User.trial_ends_at <= now)
        .values(plan="expired", trial_expired_at=now)
    )
    return {"expired": result.rowcount}


@shared_task(name="periodic.queue_trial_reminders")
def queue_trial_reminders() -> dict[str, Any]:
    """Enqueue a reminder for every trial that ends within TRIAL_REMINDER_HOURS."""
    now = utcnow()
    horizon = now + timedelta(hours=int(current_app.config["TRIAL_REMINDER_HOURS"]))
    reminded = sa.select(EmailLog.user_id).where(EmailLog.kind == "trial_reminder")
    user_ids = db.session.scalars(
        sa.select(User.id).where(
            User.plan == "trial",
            User.trial_ends_at > now,
            User.trial_ends_at <= horizon,
            User.id.not_in(reminded),
        )
    ).all()
    for user_id in user_ids:
        send_trial_reminder.delay(user_id)
    return {"queued": len(user_ids)}
