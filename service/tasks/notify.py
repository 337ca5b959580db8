"""Notification mails: the welcome mail and the trial-ending reminder.

Each mail's idempotency key (`welcome:<user>`, `trial_reminder:<user>:<trial end>`) goes into
the ledger and into `email_log` with the mail, so a second run sends nothing. A worker that dies
between the SMTP call and the commit sends the mail again, with the same Message-ID, so mail
clients fold the two.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from ..data.db import db
from ..data.models import EmailLog, User
from ..outbound.mail import send_mail
from ..reliability.task import job_task
from .rows import load


def _send(user: User, kind: str, key: str, subject: str, body: str) -> dict[str, Any]:
    """Mail `user` and record it, under `key`, in the current transaction."""
    domain = current_app.config["MAIL_FROM"].rsplit("@", 1)[-1].rstrip(">") or "localhost"
    message_id = f"<{key.replace(':', '.')}@{domain}>"
    send_mail(user.email, subject, body, message_id)
    db.session.add(
        EmailLog(
            idempotency_key=key,
            user_id=user.id,
            kind=kind,
            recipient=user.email,
            subject=subject,
            message_id=message_id,
        )
    )
    return {"status": "sent", "message_id": message_id}


@job_task("notify.send_welcome_email", key=lambda user_id: f"welcome:{user_id}")
def send_welcome_email(user_id: int) -> dict[str, Any]:
    """Send the welcome mail to a new user, once."""
    user = load(User, user_id)
    body = f"Hello {user.name},\n\nwelcome aboard!\n"
    if user.trial_ends_at:
        body += f"Your trial runs until {user.trial_ends_at:%Y-%m-%d %H:%M} UTC.\n"
    return _send(user, "welcome", f"welcome:{user.id}", f"Welcome, {user.name}", body)


def _reminder_key(user_id: int, trial_ends_at: str) -> str:
    return f"trial_reminder:{user_id}:{trial_ends_at}"


@job_task("notify.send_trial_reminder", key=_reminder_key)
def send_trial_reminder(user_id: int, trial_ends_at: str) -> dict[str, Any]:
    """Remind a trial user that the trial ends soon, once per trial end."""
    user = load(User, user_id)
    if user.plan != "trial" or user.trial_ends_at is None:
        return {"status": "skipped", "reason": f"plan is {user.plan}"}
    ends = user.trial_ends_at
    return _send(
        user,
        "trial_reminder",
        _reminder_key(user_id, trial_ends_at),
        "Your trial ends soon",
        f"Hello {user.name},\n\nyour trial ends on {ends:%Y-%m-%d %H:%M} UTC.\n",
    )
