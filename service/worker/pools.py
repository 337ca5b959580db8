"""A worker step that keeps the time budget whatever pool the worker was started with.

Celery enforces `task_time_limit` in the prefork pool and in gevent's, and
`task_soft_time_limit` in prefork only: its gevent pool ignores the soft limit. So the step

- refuses, at start, a pool that cannot keep the budget (`service.budget.pool_refusal`), and
  the leak guard on a pool that has no pool process to replace (`leak_guard_refusal`);
- runs a gevent worker on `SoftLimitedGeventPool`, Celery's gevent pool plus the soft limit:
  `SoftTimeLimitExceeded` is raised in the task's greenlet, as prefork raises it in its pool
  process, and the hard limit then ends the greenlet as Celery's pool does
  (`TimeLimitExceeded` reported by the main process, the message acknowledged: dead-lettered
  like a prefork task past its hard limit);
- gives a gevent worker a broker connection pool larger than its concurrency: every greenlet
  acknowledges its own message through that pool, and kombu's default of 10 connections made
  acknowledgements fail (`MaxConnectionsError`) when more tasks ended at once, leaving their
  messages unacknowledged to run again after the visibility timeout;
- gives a gevent worker's greenlets one result backend: Celery keeps a backend that is not
  marked thread-safe (Redis') per thread, which under gevent means per greenlet, and the pool
  runs every task in a new greenlet, so every task built a new Redis result backend (15% of
  the worker's CPU on IO-bound tasks, `bench.io_bound`). Its client takes a connection from its
  pool per command, which greenlets share as they share the broker's; the one part that is
  not safe to share, the subscription that waits for results, serves `AsyncResult.get`, which
  Celery refuses inside a task.

Either limit takes effect where the greenlet yields (a socket, a lock, a sleep): under gevent a
task that computes, or blocks in a C library that was not made cooperative, holds the whole
worker until it returns, heartbeat included, so the liveness probe ends the pod instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import bootsteps
from celery.exceptions import SoftTimeLimitExceeded

from ..budget import leak_guard_refusal, pool_name, pool_refusal


def soft_limited(target: Callable[..., Any], soft_timeout: float) -> Callable[..., Any]:
    """`target`, run in the calling greenlet under a gevent.Timeout that raises
    `SoftTimeLimitExceeded` after `soft_timeout` seconds."""
    from gevent import Timeout

    def run(*args: Any, **kwargs: Any) -> Any:
        with Timeout(soft_timeout, SoftTimeLimitExceeded(soft_timeout)):
            return target(*args, **kwargs)

    return run


def _gevent_pool() -> type:
    from celery.concurrency.gevent import TaskPool

    class SoftLimitedGeventPool(TaskPool):  # type: ignore[misc]
        """Celery's gevent pool, plus the soft time limit its `on_apply` drops."""

        def on_apply(
            self, target: Callable[..., Any], *args: Any, soft_timeout: float | None = None,
            **kwargs: Any,
        ) -> Any:  # fmt: skip
            if soft_timeout:
                target = soft_limited(target, soft_timeout)
            return super().on_apply(target, *args, **kwargs)

    return SoftLimitedGeventPool


class PoolGuard(bootsteps.Step):  # type: ignore[misc]
    """Worker step: exit at start, naming the pool, when it cannot keep the time budget or the
    leak guard asked for; a gevent worker gets the soft time limit too."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        pool = pool_name(worker.pool_cls)
        problem = pool_refusal(pool) or leak_guard_refusal(
            pool, worker.max_tasks_per_child, worker.max_memory_per_child
        )
        if problem:
            raise SystemExit(f"refusing to start: {problem}")
        if pool == "gevent":
            worker.pool_cls = _gevent_pool()
            _enough_broker_connections(worker.app.conf, worker.concurrency)
            _one_result_backend(worker.app)
        super().__init__(worker, **kwargs)


#: Broker connections a gevent worker keeps beyond one per greenlet (its consumer, remote
#: control, heartbeats and publishes).
SPARE_BROKER_CONNECTIONS = 10


def _enough_broker_connections(conf: Any, concurrency: int) -> None:
    options = dict(conf.broker_transport_options or {})
    wanted = int(concurrency) + SPARE_BROKER_CONNECTIONS
    if int(options.get("max_connections") or 0) < wanted:
        options["max_connections"] = wanted
        conf.broker_transport_options = options


def _one_result_backend(app: Any) -> None:
    # Celery's own cache for a backend it may share (`Celery._backend`, used when the backend
    # says it is thread-safe); the backend is built here, in the worker's main greenlet.
    app._backend_cache = app.backend
