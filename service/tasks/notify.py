"""Notification mails: the welcome mail and the trial-ending reminder.

Each mail has an idempotency key recorded in `email_log` under a unique constraint. A task that
runs twice finds the row and does not mail again. A worker that dies between the SMTP call and
the commit sends the mail twice, with the same Message-ID, so mail clients can fold them.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from flask import current_app

from ..db import db
from ..mailer import send_mail
from ..models import EmailLog, User
from ..reliability.retry import RETRY_POLICY
from .common import load


def _send_once(user: User, kind: str, key: str, subject: str, body: str) -> dict[str, Any]:
    """Mail `user` unless a mail with `key` was already sent; record it in the same session."""
    sent = db.session.execute(
        db.select(EmailLog).filter_by(idempotency_key=key)
    ).scalar_one_or_none()
    if sent is not None:
        return {"status": "already_sent", "message_id": sent.message_id}
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


@shared_task(name="notify.send_welcome_email", ignore_result=False, **RETRY_POLICY)
def send_welcome_email(user_id: int) -> dict[str, Any]:
    """Send the welcome mail to a new user, once."""
    user = load(User, user_id)
    body = (
        f"Hello {user.name},\n\nwelcome aboard! Your trial runs until "
        f"{user.trial_ends_at:%Y-%m-%d %H:%M} UTC.\n"
        if user.trial_ends_at
        else f"Hello {user.name},\n\nwelcome aboard!\n"
    )
    return _send_once(user, "welcome", f"welcome:{user.id}", f"Welcome, {user.name}", body)


@shared_task(name="notify.send_trial_reminder", ignore_result=False, **RETRY_POLICY)
def send_trial_reminder(user_id: int) -> dict[str, Any]:
    """Remind a trial user that the trial ends soon, once per trial end date."""
    user = load(User, user_id)
    if user.plan != "trial" or user.trial_ends_at is None:
        return {"status": "skipped", "reason": f"plan is {user.plan}"}
    ends = user.trial_ends_at
    return _send_once(
        user,
        "trial_reminder",
        f"trial_reminder:{user.id}:{ends:%Y%m%dT%H%M}",
        "Your trial ends soon",
        f"Hello {user.name},\n\nyour trial ends on {ends:%Y-%m-%d %H:%M} UTC.\n",
    )
