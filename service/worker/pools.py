"""A worker step that refuses, at start, an execution pool that cannot keep the time budget.

Celery enforces `task_time_limit` and `task_soft_time_limit` only in the prefork pool and in
gevent's (`service.budget.TIME_LIMITED_POOLS` says why that matters). The leak guard
(`--max-tasks-per-child`, `--max-memory-per-child`) also exists only in prefork.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from ..budget import pool_name, pool_refusal


class PoolGuard(bootsteps.Step):  # type: ignore[misc]
    """Worker step: exit at start, naming the pool, when it cannot keep the time budget."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        problem = pool_refusal(pool_name(worker.pool_cls))
        if problem:
            raise SystemExit(f"refusing to start: {problem}")
        super().__init__(worker, **kwargs)
