"""`job_task`: the one way this project declares a task.

It is `@shared_task` plus the delivery discipline every task needs: an explicit, stable name;
results stored only when asked; transient failures retried by the shared `RetryPolicy`,
permanent ones raised at once; and, given a `key`, the idempotency ledger, so that a second run
of the same work is a no-op. Final failures reach the dead-letter store through the
`task_failure` signal (`service.signals`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task, current_task, shared_task
from flask import current_app

from .dead_letter import ON_DEAD_LETTER
from .idempotency import run_once
from .retry import RetryPolicy, is_transient

F = TypeVar("F", bound=Callable[..., Any])

#: Tasks declared with their own time limits; every other task runs under the limits of the
#: worker group that consumes it (FLASK_CELERY__TASK_TIME_LIMIT in that group's environment).
OWN_TIME_LIMITS: set[str] = set()


def leave_limits_to_the_consumer(task_name: str | None, headers: dict[str, Any] | None) -> None:
    """Take the publisher's time limits out of a message, unless its task declares its own.

    Celery stamps the *publisher's* task_time_limit into every message, and a worker prefers
    the message's limit to its own; a job published by web would then run under web's limits
    instead of its worker group's.
    """
    if headers is not None and task_name not in OWN_TIME_LIMITS:
        headers["timelimit"] = [None, None]


def job_task(
    name: str,
    *,
    key: Callable[..., str | None] | None = None,
    store_result: bool = True,
    on_dead_letter: Callable[..., None] | None = None,
    **options: Any,
) -> Callable[[F], Task]:
    """Declare `fn` as the task `name`.

    Args:
        key: computes the idempotency key from the task's arguments; None (or a key function
            returning None) runs the body every time.
        store_result: keep the return value for the job API (`result_expires` applies).
        on_dead_letter: called with the task's arguments when it fails for good, in the
            transaction that records the dead letter (to mark the task's own row failed).
        options: any other `@shared_task` option (acks_late, ...). A `time_limit` or
            `soft_time_limit` given here travels with the task's messages and wins over the
            worker group's limits; it must stay below the visibility timeout.
    """

    def decorate(fn: F) -> Task:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            task = current_task
            try:
                idem_key = key(*args, **kwargs) if key else None
                if idem_key is None:
                    return fn(*args, **kwargs)
                return run_once(idem_key, name, task.request.id, lambda: fn(*args, **kwargs))
            except Exception as exc:
                if not is_transient(exc):
                    raise
                policy = RetryPolicy.from_config(current_app.config)
                if task.request.retries >= policy.max_retries:
                    raise  # retries exhausted: a final failure, dead-lettered
                countdown = policy.delay(task.request.retries, exc)
                raise task.retry(
                    exc=exc, countdown=countdown, max_retries=policy.max_retries
                ) from exc

        if on_dead_letter is not None:
            ON_DEAD_LETTER[name] = on_dead_letter
        if "time_limit" in options or "soft_time_limit" in options:
            OWN_TIME_LIMITS.add(name)
        # Celery checks call arguments against this signature when a task is sent.
        run.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
        return shared_task(name=name, ignore_result=not store_result, **options)(run)

    return decorate
