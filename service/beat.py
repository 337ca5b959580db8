"""Beat's scheduler: celery-redbeat's, which also records in Redis when it last ran its loop.

Only the beat holding redbeat's leader lock ticks (a follower waits for the lock in
`beat_init`), so `LAST_TICK_KEY` holds the time the schedule was last checked by whichever
beat leads. The broker exporter reports it; a value that stops moving means no beat is
scheduling. The `beat_scheduler` setting names this class.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redbeat.schedulers import RedBeatScheduler, get_redis

#: Epoch seconds of the leading beat's last completed tick, in beat's Redis (no expiry: an old
#: value is the signal).
LAST_TICK_KEY = "flask_celery:beat:last_tick"

log = logging.getLogger(__name__)


class TickRecordingScheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat's scheduler, recording each completed tick under `LAST_TICK_KEY`."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = float(super().tick(*args, **kwargs))
        try:
            get_redis(self.app).set(LAST_TICK_KEY, repr(time.time()))
        except redis.RedisError as exc:
            # scheduling goes on; the exporter shows the tick as late
            log.warning("could not record beat's tick: %s", exc)
        return interval
