"""Beat runs' idempotency keys: one key per schedule entry and scheduled time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celery.schedules import crontab, schedule

from service import create_app
from service.tasks.periodic import beat_run_key, last_due


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


def test_beat_runs_of_the_same_tick_share_a_key_and_manual_runs_have_none() -> None:
    with create_app().app_context():
        first = beat_run_key("expire-trials-nightly")
        assert first == beat_run_key("expire-trials-nightly")
        assert first is not None and first.startswith("beat:expire-trials-nightly:")
        assert beat_run_key(None) is None
