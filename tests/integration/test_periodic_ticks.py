"""A beat tick sent twice runs once in effect, even when the second send comes after the
entry's next due time.

The duplicate is what a second beat sends during a failover: it read the entry's last run
before the first beat stored its send. Both sends go through beat's real scheduler, on the
test's own Redis, to a real worker. The entry runs every two seconds; the second send waits
until the clock has passed the entry's next due time and the next two-second boundary, where
a key computed from the clock at run time would change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redbeat.schedulers import RedBeatSchedulerEntry

from harness.faults import Stack
from harness.postgres import Database
from harness.processes import wait_until
from service.beat import TickRecordingScheduler, last_due
from tests.support.beat import plan, trial_that_ended

#: The guarantees hold on both databases the service supports (the chart's is PostgreSQL).
pytestmark = pytest.mark.databases("sqlite", "postgresql")

ENTRY, INTERVAL = "expire-trials-every-two-seconds", 2.0
SCHEDULE = {
    ENTRY: {
        "task": "periodic.expire_trials",
        "schedule": INTERVAL,
        "kwargs": {"schedule_entry": ENTRY},
    }
}


@pytest.fixture
def stack(tmp_path: Path, database: Database) -> Iterator[Stack]:
    """A Redis, a database and a worker of the `default` queue, on the test's schedule."""
    s = Stack.start(
        tmp_path,
        env={"FLASK_CELERY__BEAT_SCHEDULE": json.dumps(SCHEDULE)},
        database_url=database.fresh_url(tmp_path),
    )
    s.worker("worker")
    yield s
    s.close()


def entry(stack: Stack) -> Any:
    """The entry as beat reads it from Redis, with its last run."""
    key = RedBeatSchedulerEntry.generate_key(stack.celery, ENTRY)
    return RedBeatSchedulerEntry.from_key(key, app=stack.celery)


def test_a_tick_sent_twice_across_its_next_due_time_runs_once(stack: Stack) -> None:
    stack.celery.conf.beat_schedule = SCHEDULE  # as the worker's environment has it
    scheduler = TickRecordingScheduler(app=stack.celery)  # stores the schedule in Redis
    try:
        stale = entry(stack)
        wait_until(lambda: stale.is_due()[0], timeout=10, what="the entry due")
        first_user = trial_that_ended(stack, "first")
        first = scheduler.apply_async(stale)
        assert first.get(timeout=30) == {"expired": 1}
        assert plan(stack, first_user) == "expired"
        assert entry(stack).last_run_at > stale.last_run_at  # the send was stored

        sent_at = stack.celery.now()
        next_due = entry(stack).last_run_at + timedelta(seconds=INTERVAL)
        wait_until(
            lambda: (
                (now := stack.celery.now()) > next_due
                and last_due(INTERVAL, now) != last_due(INTERVAL, sent_at)
            ),
            timeout=10,
            what="the next due time and the next boundary",
        )
        late_user = trial_that_ended(stack, "late")
        duplicate = scheduler.apply_async(stale)
        again = duplicate.get(timeout=30)
        assert again.get("status") == "duplicate", again
        assert plan(stack, late_user) == "trial"
        assert stack.ledger_keys("beat:") == 1

        # the entry's next tick, from the last run the first send stored, is a run of its own
        following = scheduler.apply_async(entry(stack))
        assert following.get(timeout=30) == {"expired": 1}
        assert plan(stack, late_user) == "expired"
        assert stack.ledger_keys("beat:") == 2
    finally:
        scheduler.close()
