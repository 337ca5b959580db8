"""Beat with the Redis-held schedule and leader lock: scheduled work really runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from harness.processes import stop, wait_until
from harness.stack import BIN, spawn
from service.data.db import db, utcnow
from service.data.models import User
from tests.support.api import new_user

FAST_SCHEDULE = {"expire-trials-every-second": {"task": "periodic.expire_trials", "schedule": 1.0}}


@pytest.fixture
def beat(stack_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    """A real `celery beat` whose schedule adds a one-second expiry run; yields its log."""
    env = {**stack_env, "FLASK_CELERY__BEAT_SCHEDULE": json.dumps(FAST_SCHEDULE)}
    log = tmp_path / "beat.log"
    proc = spawn(
        [str(BIN / "celery"), "-A", "service.make_celery", "beat", "--loglevel", "INFO"], env, log
    )
    yield log
    stop(proc)


def test_beat_enqueues_the_schedule_and_holds_the_leader_lock(
    api: httpx.Client, stack_app: Any, stack_env: dict[str, str], beat: Path
) -> None:
    user = new_user(api)
    with stack_app.app_context():
        db.session.get(User, user["id"]).trial_ends_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    wait_until(
        lambda: api.get(f"/users/{user['id']}").json()["plan"] == "expired",
        timeout=30,
        what=f"beat-driven expiry (log: {beat})",
    )
    broker = redis.Redis.from_url(stack_env["FLASK_CELERY__BROKER_URL"])
    assert broker.exists("flask_celery:redbeat:lock")
    assert "expire-trials-every-second" in beat.read_text()
