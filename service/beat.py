"""Beat's scheduler: celery-redbeat's, which also records in Redis when it last ran its loop.

Only the beat holding redbeat's leader lock ticks (a follower waits for the lock in
`beat_init`), so `LAST_TICK_KEY` holds the time the schedule was last checked by whichever
beat leads. The broker exporter reports it; a value that stops moving means no beat is
scheduling. The `beat_scheduler` setting names this class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from redbeat.schedulers import RedBeatScheduler, get_redis

#: Epoch seconds of the leading beat's last completed tick, in beat's Redis (no expiry: an old
#: value is the signal).
LAST_TICK_KEY = "flask_celery:beat:last_tick"

#: Work for the leading beat after each tick, each called with the Celery app (the job outbox
#: relay, connected by `service.signals`).
AFTER_TICK: list[Callable[[Any], None]] = []

log = logging.getLogger(__name__)


def run_after_tick(app: Any) -> None:
    """Call every `AFTER_TICK` hook; an error is logged and never stops scheduling."""
    for hook in AFTER_TICK:
        try:
            hook(app)
        except Exception:  # noqa: BLE001 - scheduling goes on
            log.exception("beat: after-tick hook %r failed", hook)


class TickRecordingScheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat's scheduler, recording each completed tick under `LAST_TICK_KEY`."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = float(super().tick(*args, **kwargs))
        run_after_tick(self.app)
        try:
            get_redis(self.app).set(LAST_TICK_KEY, repr(time.time()))
        except redis.RedisError as exc:
            # scheduling goes on; the exporter shows the tick as late
            log.warning("could not record beat's tick: %s", exc)
        return interval
