"""Beat's scheduler: celery-redbeat's, kept alive through Redis outages, passing each run the
time it was due, and recording in Redis when it last ran its loop.

Leadership. Only the beat holding redbeat's leader lock schedules. The lock is taken and kept
by `tick`, never by redbeat's blocking wait in `beat_init`, which leaves beat without a lock,
and then crashing, on any Redis error: a beat that does not hold the lock tries to take it
once per loop and schedules nothing meanwhile. A Redis error (refused, reset,
timed out, still loading its data) only skips the tick; the loop retries every
`RETRY_INTERVAL` seconds and resumes when Redis answers. Beat gives up leading only when the
lock holds another beat's token; a lock that Redis lost (a restart without persistence, or
one that outlived its timeout while Redis hung) is taken again, and a schedule that Redis lost
is installed again.

Due times. A schedule entry whose kwargs name its `schedule_entry` also gets `scheduled_at`:
the time its run was due, computed from the schedule and the entry's last run as stored in
Redis (`due_time`), never from the clock at send or run time. Every send of one tick, by two
beats during a failover or a publish that is retried, carries the same value, so the task's
idempotency key can be the entry and that time.

`LAST_TICK_KEY` holds the time the schedule was last checked by whichever beat leads. The
broker exporter reports it; a value that stops moving means no beat is scheduling. The
`beat_scheduler` setting names this class.
"""

from __future__ import annotations

import builtins
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import kombu.exceptions
import redis
from celery.schedules import crontab, schedule
from redbeat.schedulers import (
    LUA_EXTEND_TO_SCRIPT,
    RedBeatScheduler,
    get_redis,
)
from redis.exceptions import LockNotOwnedError

#: Epoch seconds of the leading beat's last completed tick, in beat's Redis (no expiry: an old
#: value is the signal).
LAST_TICK_KEY = "flask_celery:beat:last_tick"

#: An entry whose kwargs carry this name gets `SCHEDULED_AT` too (see `due_time`).
SCHEDULE_ENTRY = "schedule_entry"
#: The kwarg holding the time the run was due, ISO 8601 in UTC.
SCHEDULED_AT = "scheduled_at"

#: Seconds between ticks while Redis does not answer.
RETRY_INTERVAL = 1.0
#: Seconds between the log lines of one outage after its first.
OUTAGE_LOG_INTERVAL = 60.0

#: Errors of beat's Redis or of the broker that say "not now": the loop retries them.
REDIS_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)

#: The attribute of a Celery app that lists the work for its leading beat after each tick
#: (the job outbox relay, added by `service.signals`): kept on the app, so it lives and dies
#: with it and another app's beat never runs it.
AFTER_TICK = "flask_celery_after_tick"


def after_tick(app: Any, hook: Callable[[Any], None]) -> None:
    """Have the leading beat of Celery app `app` call `hook(app)` after each tick."""
    hooks = getattr(app, AFTER_TICK, None)
    if hooks is None:
        hooks = []
        setattr(app, AFTER_TICK, hooks)
    hooks.append(hook)


log = logging.getLogger(__name__)


def run_after_tick(app: Any) -> None:
    """Call `app`'s after-tick hooks; an error is logged and never stops scheduling."""
    for hook in getattr(app, AFTER_TICK, ()):
        try:
            hook(app)
        except Exception:  # noqa: BLE001 - scheduling goes on
            log.exception("beat: after-tick hook %r failed", hook)


def last_due(entry_schedule: Any, now: datetime) -> datetime:
    """The latest time at or before `now` at which `entry_schedule` was due, in UTC (an
    interval schedule counts its intervals from the epoch)."""
    if isinstance(entry_schedule, crontab):
        minute = now.astimezone(entry_schedule.tz).replace(second=0, microsecond=0)
        for _ in range(8 * 24 * 60):  # a crontab fires at least once a week
            weekday = (minute.isoweekday()) % 7  # crontab counts Sunday as 0
            if (
                minute.minute in entry_schedule.minute
                and minute.hour in entry_schedule.hour
                and weekday in entry_schedule.day_of_week
                and minute.day in entry_schedule.day_of_month
                and minute.month in entry_schedule.month_of_year
            ):
                return minute.astimezone(UTC)
            minute -= timedelta(minutes=1)
        raise ValueError(f"{entry_schedule} was not due in the last eight days")
    seconds = _interval(entry_schedule).total_seconds()
    return datetime.fromtimestamp(now.timestamp() // seconds * seconds, UTC)


def due_time(entry_schedule: Any, last_run_at: datetime | None, now: datetime) -> datetime:
    """When the run of `entry_schedule` that is due at `now` became due, in UTC.

    That is the schedule's first time after the entry's last run, as Celery decides that the
    entry is due: a crontab's next minute after `last_run_at`, an interval's `last_run_at`
    plus the interval. It depends on `now` only for an entry that never ran (the latest time
    the schedule was due at or before `now`) and for schedules of other kinds (`now`, to the
    second).
    """
    if last_run_at is None:
        return last_due(entry_schedule, now)
    if isinstance(entry_schedule, crontab):
        start, delta, _ = entry_schedule.remaining_delta(last_run_at)
        return (start + delta).astimezone(UTC)  # type: ignore[no-any-return]
    if isinstance(entry_schedule, schedule | int | float | timedelta):
        aware = last_run_at if last_run_at.tzinfo else last_run_at.replace(tzinfo=UTC)
        return (aware + _interval(entry_schedule)).astimezone(UTC)
    return now.astimezone(UTC).replace(microsecond=0)


def _interval(entry_schedule: Any) -> timedelta:
    if isinstance(entry_schedule, schedule):
        return entry_schedule.run_every  # type: ignore[no-any-return]
    if isinstance(entry_schedule, timedelta):
        return entry_schedule
    return timedelta(seconds=float(entry_schedule))


class TickRecordingScheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat's scheduler, leading only while it holds the lock, riding out Redis errors,
    passing due times and recording each completed tick under `LAST_TICK_KEY`."""

    #: redis-py's Lock while this beat has one; its token is None while another beat leads.
    lock: Any = None
    #: The lock's key, None without one; redbeat's own `lock_key` stays None.
    leader_lock_key: str | None = None
    lock_key: str | None = None

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        self._schedule_installed = False
        self._outage_since: float | None = None
        self._outage_logged = 0.0
        super().__init__(app, *args, **kwargs)
        # `tick` takes and extends the lock (see the module's docstring). Without a
        # `lock_key`, redbeat's `beat_init` receiver and its tick leave the lock alone.
        self.leader_lock_key, self.lock_key = self.lock_key, None

    def setup_schedule(self) -> None:
        """Store the configured schedule in Redis; if Redis does not answer, the first tick
        that reaches it does."""
        try:
            super().setup_schedule()
        except REDIS_UNAVAILABLE as exc:
            self._redis_unavailable(exc)
        else:
            self._schedule_installed = True

    def tick(self, min: Any = min, **kwargs: Any) -> float:  # noqa: A002 - Celery's signature
        try:
            if self.leader_lock_key:
                if self._holds_lock():
                    # raises LockNotOwnedError, before anything is sent, if another beat leads
                    self.lock.extend(int(self.lock_timeout))
                elif not self._acquire_lock():
                    self._redis_available()
                    return float(self.max_interval)
            interval = float(super().tick(min=min, **kwargs))
            run_after_tick(self.app)
            if self._schedule_lost():
                super().setup_schedule()
                self._schedule_installed = True
                interval = 0.0  # check the schedule it just stored at once
        except LockNotOwnedError:
            self._redis_available()
            return 0.0 if self._acquire_lock(after_loss=True) else float(self.max_interval)
        except REDIS_UNAVAILABLE as exc:
            self._redis_unavailable(exc)
            return float(builtins.min(RETRY_INTERVAL, self.max_interval))
        self._redis_available()
        self._record_tick()
        return interval

    def apply_async(
        self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        """Send `entry`'s task, with the time its run was due if the entry names itself."""
        if SCHEDULE_ENTRY in (entry.kwargs or {}):
            due = due_time(entry.schedule, entry.last_run_at, self.app.now()).isoformat()
            sent = entry.__class__(**dict(entry, kwargs={**entry.kwargs, SCHEDULED_AT: due}))
            sent.last_run_at = entry.last_run_at  # the constructor would make None "now"
            entry = sent
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def _ensure_connected(self) -> Any:
        """The broker connection for the producer, in one attempt: Celery's retries (forever,
        with `broker_connection_max_retries` unset) would hold the loop, and leave the lock
        unextended, while the broker is away; the next tick tries again."""
        return self.connection.ensure_connection(max_retries=0)

    @property
    def info(self) -> str:
        """beat's banner: redbeat's lines and the lock's."""
        lock = f"       . lock -> `{self.leader_lock_key}` ({self.lock_timeout}s)"
        return f"{super().info}\n{lock}" if self.leader_lock_key else str(super().info)

    def close(self) -> None:
        """Release the lock if this beat still holds it; if Redis does not answer, the lock
        expires after its timeout."""
        lock, self.lock = self.lock, None
        if lock is not None and lock.local.token is not None:
            try:
                lock.release()
                log.info("beat: Released lock")
            except LockNotOwnedError:
                pass  # another beat leads already
            except REDIS_UNAVAILABLE as exc:
                log.warning(
                    "beat: could not release the lock (%s); it expires within %ss",
                    exc,
                    self.lock_timeout,
                )
        super().close()

    def _holds_lock(self) -> bool:
        return self.lock is not None and self.lock.local.token is not None

    def _acquire_lock(self, after_loss: bool = False) -> bool:
        """Take the lock if nobody holds it (redbeat's lock, with its extend-to script)."""
        client = get_redis(self.app)
        if self.lock is None:
            self.lock = client.lock(self.leader_lock_key, timeout=self.lock_timeout)
            self.lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        self.lock.local.token = None
        token = uuid.uuid4().hex
        # A SET that Redis applied but whose answer was lost is retried by the client and
        # then fails: the stored token tells.
        acquired = self.lock.acquire(blocking=False, token=token)
        if acquired or client.get(self.leader_lock_key) == token:
            self.lock.local.token = token.encode()
            log.info(
                "beat: Acquired lock%s",
                " again (it had expired, or Redis lost it)" if after_loss else "",
            )
            return True
        if after_loss:
            log.warning("beat: Another beat holds the lock now; scheduling nothing until it ends")
        else:
            log.debug("beat: Another beat holds the lock")
        return False

    def _schedule_lost(self) -> bool:
        """Whether Redis has not got the schedule (beat started while Redis was down, or Redis
        restarted without its data)."""
        if not self._schedule_installed:
            return True
        conf = self.app.redbeat_conf
        if not conf.schedule or get_redis(self.app).exists(conf.statics_key):
            return False
        log.warning("beat: Redis lost the schedule; storing it again")
        return True

    def _record_tick(self) -> None:
        try:
            get_redis(self.app).set(LAST_TICK_KEY, repr(time.time()))
        except redis.RedisError as exc:
            # scheduling goes on; the exporter shows the tick as late
            log.warning("could not record beat's tick: %s", exc)

    def _redis_unavailable(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = self._outage_logged = now
            log.warning("beat: Redis does not answer (%s); retrying, scheduling nothing", exc)
        elif now - self._outage_logged >= OUTAGE_LOG_INTERVAL:
            self._outage_logged = now
            log.warning(
                "beat: Redis has not answered for %.0fs (%s); retrying",
                now - self._outage_since,
                exc,
            )

    def _redis_available(self) -> None:
        if self._outage_since is not None:
            log.info("beat: Redis answers again after %.1fs", time.monotonic() - self._outage_since)
            self._outage_since = None
