"""Beat runs' idempotency keys: one key per schedule entry and the time its run was due.

A tick can be sent twice: by two beats during a failover (both read the entry's last run
before either stored the new one), or by a publish that is retried. The second send may come
much later than the first, after the clock passed the schedule's next time. Both must carry
the same due time, hence the same key; the entry's next tick must not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery.schedules import crontab, schedule

from service import create_app
from service.beat import due_time, last_due
from service.tasks.periodic import beat_run_key


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_last_due_of_a_nightly_crontab() -> None:
    nightly = crontab(minute=0, hour=2)
    assert last_due(nightly, at("2026-11-23T02:00:30")) == at("2026-11-23T02:00:00")
    assert last_due(nightly, at("2026-11-23T01:59:59")) == at("2026-11-22T02:00:00")
    assert last_due(nightly, at("2026-11-23T23:10:00")) == at("2026-11-23T02:00:00")


def test_last_due_of_an_hourly_crontab_and_a_weekday_crontab() -> None:
    assert last_due(crontab(minute=5), at("2026-11-23T10:04:00")) == at("2026-11-23T09:05:00")
    mondays = crontab(minute=0, hour=9, day_of_week="mon")  # 2026-11-23 is a Monday
    assert last_due(mondays, at("2026-11-25T12:00:00")) == at("2026-11-23T09:00:00")


def test_last_due_of_an_interval_schedule() -> None:
    every_ten = schedule(timedelta(seconds=10))
    assert last_due(every_ten, at("2026-11-23T10:00:17")) == at("2026-11-23T10:00:10")
    assert last_due(2.0, at("2026-11-23T10:00:17.5")) == at("2026-11-23T10:00:16")


@pytest.mark.parametrize(
    ("entry_schedule", "last_run", "due", "next_due"),
    [
        # hourly at :05: the tick due at 10:05 is sent at 10:05:00.3; the next is due at 11:05
        (crontab(minute=5), "2026-11-23T09:05:00.2", "2026-11-23T10:05", "2026-11-23T11:05"),
        (crontab(minute=0, hour=2), "2026-11-22T02:00:01", "2026-11-23T02:00", "2026-11-24T02:00"),
        # every 2 s, counted from the last send
        (2.0, "2026-11-23T10:00:00.7", "2026-11-23T10:00:02.7", "2026-11-23T10:00:05"),
    ],
)
def test_both_sends_of_a_tick_are_due_at_once_and_the_next_tick_later(
    entry_schedule: Any, last_run: str, due: str, next_due: str
) -> None:
    first_send = at(due) + timedelta(seconds=0.3)
    # the duplicate comes after the next tick's time, and after the boundary a key computed
    # from the clock would use
    late_send = at(next_due) + timedelta(seconds=1.5)
    assert last_due(entry_schedule, first_send) != last_due(entry_schedule, late_send)

    first = due_time(entry_schedule, at(last_run), first_send)
    duplicate = due_time(entry_schedule, at(last_run), late_send)
    assert first == duplicate == at(due)
    # once the first send is stored as the entry's last run, the next tick is another time
    assert due_time(entry_schedule, first_send, late_send) == at(next_due)


def test_an_entry_that_never_ran_is_due_at_the_schedules_latest_time() -> None:
    assert due_time(crontab(minute=5), None, at("2026-11-23T10:07:00")) == at("2026-11-23T10:05")


def test_both_runs_of_a_tick_share_a_key_whenever_they_run_and_manual_runs_have_none() -> None:
    tick = due_time(crontab(minute=0, hour=2), at("2026-11-22T02:00:01"), at("2026-11-23T02:00:01"))
    with create_app().app_context():
        first = beat_run_key("expire-trials-nightly", tick.isoformat())
        # the same instant written in another zone is the same tick
        again = beat_run_key("expire-trials-nightly", tick.astimezone().isoformat())
        next_night = beat_run_key("expire-trials-nightly", (tick + timedelta(days=1)).isoformat())
        assert first == again == "beat:expire-trials-nightly:2026-11-23T02:00:00+00:00"
        assert next_night != first
        assert beat_run_key("trial-reminders-hourly", tick.isoformat()) != first
        assert beat_run_key(None) is None
