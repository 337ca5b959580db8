"""Scheduled work run by beat: nightly trial expiry and the hourly trial-ending reminders.

Beat passes each run the name of its schedule entry and the time the run was due
(`scheduled_at`, computed by the scheduler from the schedule and the entry's last run, see
`service.beat`). The run's idempotency key is that name and that time, so if a tick is
enqueued twice, by two beats during a failover or by a retried publish, even minutes apart,
the second run is a no-op. A run started from the API carries no entry name and always runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from celery import current_app as current_celery
from flask import current_app

from ..beat import last_due
from ..data.db import db, utcnow
from ..data.models import EmailLog, User
from ..reliability.task import job_task
from .notify import send_trial_reminder


def beat_run_key(schedule_entry: str | None = None, scheduled_at: str | None = None) -> str | None:
    """`beat:<entry>:<scheduled time>` for a beat run; None (no ledger) for a manual one."""
    if schedule_entry is None:
        return None
    if scheduled_at is None:
        # sent by a scheduler that does not pass due times: the latest due time as of now
        entry = current_celery.conf.beat_schedule[schedule_entry]
        due = last_due(entry["schedule"], utcnow())
    else:
        due = datetime.fromisoformat(scheduled_at)
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return f"beat:{schedule_entry}:{due.astimezone(UTC).isoformat()}"


@job_task("periodic.expire_trials", key=beat_run_key)
def expire_trials(
    schedule_entry: str | None = None, scheduled_at: str | None = None
) -> dict[str, Any]:
    """Move every trial whose end has passed to the `expired` plan."""
    now = utcnow()
    result: Any = db.session.execute(
        sa.update(User)
        .where(User.plan == "trial", User.trial_ends_at <= now)
        .values(plan="expired", trial_expired_at=now)
    )
    return {"expired": result.rowcount}


@job_task("periodic.queue_trial_reminders", key=beat_run_key)
def queue_trial_reminders(
    schedule_entry: str | None = None, scheduled_at: str | None = None
) -> dict[str, Any]:
    """Enqueue a reminder for every trial that ends within TRIAL_REMINDER_HOURS."""
    now = utcnow()
    horizon = now + timedelta(hours=int(current_app.config["TRIAL_REMINDER_HOURS"]))
    reminded = sa.select(EmailLog.user_id).where(EmailLog.kind == "trial_reminder")
    users = db.session.execute(
        sa.select(User.id, User.trial_ends_at).where(
            User.plan == "trial",
            User.trial_ends_at > now,
            User.trial_ends_at <= horizon,
            User.id.not_in(reminded),
        )
    ).all()
    for user_id, trial_ends_at in users:  # the query only selects trials with an end
        send_trial_reminder.delay(user_id, cast(datetime, trial_ends_at).isoformat())
    return {"queued": len(users)}
