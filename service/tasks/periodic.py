"""Scheduled work run by beat: nightly trial expiry and the hourly trial-ending reminders.

Beat passes each run the name of its schedule entry. The run's idempotency key is that name
plus the entry's scheduled time (the latest time the schedule was due), so if a tick is
enqueued twice, by two beats during a failover for instance, the second run is a no-op. A run
started from the API carries no entry name and always runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from celery import current_app as current_celery
from celery.schedules import crontab, schedule
from flask import current_app

from ..data.db import db, utcnow
from ..data.models import EmailLog, User
from ..reliability.task import job_task
from .notify import send_trial_reminder


def last_due(entry_schedule: Any, now: datetime) -> datetime:
    """The latest time at or before `now` at which `entry_schedule` was due."""
    if isinstance(entry_schedule, crontab):
        minute = now.replace(second=0, microsecond=0)
        for _ in range(8 * 24 * 60):  # a crontab fires at least once a week
            weekday = (minute.isoweekday()) % 7  # crontab counts Sunday as 0
            if (
                minute.minute in entry_schedule.minute
                and minute.hour in entry_schedule.hour
                and weekday in entry_schedule.day_of_week
                and minute.day in entry_schedule.day_of_month
                and minute.month in entry_schedule.month_of_year
            ):
                return minute
            minute -= timedelta(minutes=1)
        raise ValueError(f"{entry_schedule} was not due in the last eight days")
    seconds = (
        entry_schedule.run_every.total_seconds()
        if isinstance(entry_schedule, schedule)
        else float(entry_schedule)
    )
    return datetime.fromtimestamp(now.timestamp() // seconds * seconds, UTC)


def beat_run_key(schedule_entry: str | None = None) -> str | None:
    """`beat:<entry>:<scheduled time>` for a beat run; None (no ledger) for a manual one."""
    if schedule_entry is None:
        return None
    entry = current_celery.conf.beat_schedule[schedule_entry]
    return f"beat:{schedule_entry}:{last_due(entry['schedule'], utcnow()).isoformat()}"


@job_task("periodic.expire_trials", key=beat_run_key)
def expire_trials(schedule_entry: str | None = None) -> dict[str, Any]:
    """Move every trial whose end has passed to the `expired` plan."""
    now = utcnow()
    result: Any = db.session.execute(
        sa.update(User)
        .where(User.plan == "trial", User.trial_ends_at <= now)
        .values(plan="expired", trial_expired_at=now)
    )
    return {"expired": result.rowcount}


@job_task("periodic.queue_trial_reminders", key=beat_run_key)
def queue_trial_reminders(schedule_entry: str | None = None) -> dict[str, Any]:
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
