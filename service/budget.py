"""The time budget: how long a task may run, and every deadline that follows from it.

Contract 3 of the design, for every worker group: the soft time limit comes before the hard
one, the hard limit before the pod's termination grace period (a warm shutdown lets the running
task finish) and before Redis' visibility timeout (Redis hands a message held longer to a second
worker). From the same numbers follow the longest countdown the API accepts (a delayed message
is held too) and how long a task counts as in flight for autoscaling. The chart derives its
grace periods and refuses broken chains for its values (`templates/_workers.tpl`,
`templates/_validate.tpl`); this module is the one place the service computes them.

Imports nothing from the service, so configuration, workers and the API all call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Hard time limit of every task that sets none itself; a worker group sets its own with
#: FLASK_CELERY__TASK_TIME_LIMIT (a worker's `--time-limit` flag would lose to this setting).
TASK_TIME_LIMIT = 300
#: The soft limit comes this many seconds before the hard one, so a task can clean up.
SOFT_LIMIT_HEADROOM = 30
#: Unless set, the visibility timeout is the longest hard limit plus this margin...
VISIBILITY_MARGIN = 300
#: ...and at least this long, which is also about the longest countdown the API accepts.
MIN_VISIBILITY_TIMEOUT = 3600
#: Seconds added to a task's hard limit before its in-flight entry counts as stale.
INFLIGHT_MARGIN = 30
#: The hard limit assumed for a task when neither it, its message nor its worker sets one.
UNLIMITED_TASK_LIMIT = 3600


class ConfigError(ValueError):
    """A configuration that would break a delivery guarantee; the message names the values."""


def soft_time_limit(hard: float) -> float:
    """The default soft limit for a hard limit of `hard` seconds."""
    return hard - SOFT_LIMIT_HEADROOM


def longest_time_limit(
    settings: Mapping[str, Any], task_limits: Iterable[float | None] = ()
) -> float:
    """The longest hard time limit any task can run under."""
    return max([float(settings.get("task_time_limit") or 0)] + [float(t) for t in task_limits if t])


def visibility_timeout(settings: Mapping[str, Any]) -> float:
    """The visibility timeout `settings` set, or the one derived from their longest limit."""
    given = (settings.get("broker_transport_options") or {}).get("visibility_timeout")
    if given is not None:
        return float(given)
    return max(MIN_VISIBILITY_TIMEOUT, longest_time_limit(settings) + VISIBILITY_MARGIN)


#: Pools in which the hard and soft time limits are enforced. Prefork kills a pool process past
#: its hard limit and replaces it; gevent ends the task's greenlet at its next yield (its soft
#: limit is ours: `service.worker.pools`). Under `threads` and `solo` a task runs past its
#: limits, which voids hard limit < grace period < visibility timeout (a task still running when
#: its message becomes visible again runs twice); `solo` also runs one task at a time whatever
#: `--concurrency` says, so a capacity computed from the concurrency is wrong.
TIME_LIMITED_POOLS = ("prefork", "gevent")
#: Pools that must be chosen on the command line (`--pool`): Celery monkey-patches the standard
#: library for them before the app is imported, which `worker_pool` in the settings is too late
#: for (every socket, lock and sleep would then block the whole worker).
COMMAND_LINE_POOLS = ("gevent",)
#: Pools with the leak guard: only prefork has pool processes to replace after N tasks or past
#: a memory cap; a gevent worker runs every task in its one process, which the container's
#: memory limit guards instead.
LEAK_GUARD_POOLS = ("prefork",)


def pool_name(pool_cls: Any) -> str:
    """The name `--pool` takes for a pool class (`celery.concurrency.thread` is `threads`), or
    for a name as configured (`worker_pool`)."""
    if isinstance(pool_cls, str):
        return pool_cls
    name = str(pool_cls.__module__).rsplit(".", 1)[-1]
    return "threads" if name == "thread" else name


def pool_refusal(pool: str) -> str | None:
    """Why a worker must not run with `pool`, or None when the pool keeps the time budget."""
    if pool in TIME_LIMITED_POOLS:
        return None
    return (
        f"worker pool {pool!r} does not enforce task time limits, so a task could outlive the "
        "grace period and the broker's visibility timeout and run twice; use one of "
        f"{', '.join(TIME_LIMITED_POOLS)} (--pool)"
    )


def leak_guard_refusal(
    pool: str, max_tasks_per_child: int | None, max_memory_per_child: int | None
) -> str | None:
    """Why `pool` cannot take the leak guard asked for, or None when it can (or none is asked)."""
    if pool in LEAK_GUARD_POOLS or not (max_tasks_per_child or max_memory_per_child):
        return None
    return (
        f"worker pool {pool!r} has no pool process to replace, so --max-tasks-per-child "
        f"({max_tasks_per_child or 0}) and --max-memory-per-child ({max_memory_per_child or 0}) "
        "would be ignored; drop them (the container's memory limit guards a gevent worker) or "
        f"use one of {', '.join(LEAK_GUARD_POOLS)}"
    )


def check(settings: Mapping[str, Any], task_limits: Iterable[float | None] = ()) -> None:
    """Refuse a hard time limit that Redis' visibility timeout would cut short, and a
    configured worker pool that would not enforce it (`worker_pool`; `--pool` is checked when
    the worker starts, by `service.worker.pools.PoolGuard`)."""
    pool = pool_name(settings.get("worker_pool") or "prefork")
    problem = pool_refusal(pool)
    if problem:
        raise ConfigError(f"worker_pool: {problem}; set FLASK_CELERY__WORKER_POOL=prefork")
    if pool in COMMAND_LINE_POOLS:
        raise ConfigError(
            f"worker_pool: {pool!r} must be chosen with the worker's --pool {pool}, which "
            "patches the standard library before the app loads; unset FLASK_CELERY__WORKER_POOL"
        )
    limit = longest_time_limit(settings, task_limits)
    visibility = (settings.get("broker_transport_options") or {}).get("visibility_timeout")
    if limit and visibility and float(visibility) <= limit:
        raise ConfigError(
            f"broker_transport_options.visibility_timeout ({visibility}s) must be longer than "
            f"the longest hard time limit ({limit:g}s), or Redis redelivers tasks that are still "
            "running: raise FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout or lower "
            "FLASK_CELERY__TASK_TIME_LIMIT"
        )


def max_delay(settings: Mapping[str, Any]) -> float:
    """The longest countdown a job may have: a message held longer than the visibility timeout
    goes to a second worker, so the delay plus the run time must stay within it."""
    return visibility_timeout(settings) - longest_time_limit(settings)


def hard_limit(
    message_limit: float | None,
    task_limit: float | None,
    worker_limit: float | None,
    configured_limit: float | None,
) -> float:
    """The hard limit a received task runs under: its message's, its own, its worker's, the
    configured one, in that order of precedence (Celery's)."""
    return float(
        message_limit or task_limit or worker_limit or configured_limit or UNLIMITED_TASK_LIMIT
    )


def inflight_deadline(start: float, hard: float) -> float:
    """When a task that starts at `start` (epoch seconds) under `hard` must be over."""
    return start + hard + INFLIGHT_MARGIN
