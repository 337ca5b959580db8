"""The execution pools that keep the time budget, and a worker step that refuses the others.

Celery enforces `task_time_limit` and `task_soft_time_limit` only in the prefork pool (a pool
process past its hard limit is killed and replaced) and in gevent's. Under `threads` and `solo`
a task runs past its limits for as long as it likes, which voids the chain the deployment
relies on: hard limit < pod grace period < broker visibility timeout (a task still running when
its message becomes visible again runs twice). `solo` runs one task at a time whatever
`--concurrency` says, so any capacity computed from the concurrency is wrong too. The leak
guard (`--max-tasks-per-child`, `--max-memory-per-child`) also exists only in prefork.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps

#: Pools in which Celery enforces the hard and soft time limits.
TIME_LIMITED_POOLS = ("prefork", "gevent")


def pool_name(pool_cls: Any) -> str:
    """The name `--pool` takes for a pool class (`celery.concurrency.thread` is `threads`)."""
    name = str(getattr(pool_cls, "__module__", pool_cls)).rsplit(".", 1)[-1]
    return "threads" if name == "thread" else name


def refusal(pool: str) -> str | None:
    """Why a worker must not run with `pool`, or None when the pool keeps the time budget."""
    if pool in TIME_LIMITED_POOLS:
        return None
    return (
        f"worker pool {pool!r} does not enforce task time limits, so a task could outlive the "
        "grace period and the broker's visibility timeout and run twice; use one of "
        f"{', '.join(TIME_LIMITED_POOLS)} (--pool)"
    )


class PoolGuard(bootsteps.Step):  # type: ignore[misc]
    """Worker step: exit at start, naming the pool, when it cannot keep the time budget."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        problem = refusal(pool_name(worker.pool_cls))
        if problem:
            raise SystemExit(f"refusing to start: {problem}")
        super().__init__(worker, **kwargs)
