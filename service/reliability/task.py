"""`job_task`: the one way this project declares a task.

It is `@shared_task` plus the delivery discipline every task needs: an explicit, stable name;
results stored only when asked; transient failures retried by the shared `RetryPolicy`,
permanent ones raised at once; and, given a `key`, the idempotency ledger, so that a second run
of the same work is a no-op. Final failures reach the dead-letter store through the
`task_failure` signal (`service.signals`).

The classified region covers everything the task does, the final COMMIT of its rows (and its
ledger key) included: the commit happens here, not after the task returns, so a database that
drops the connection at that moment is retried like any other transient failure. When the
broker cannot take the retry either (Redis is down: it usually is, when Redis was the failure),
Celery would reject the message without requeueing it, and with `acks_late` that is the only
copy: it is rejected with requeue instead. If Redis is back by then the message goes straight
back to its queue; if not, it stays in Redis' unacked set and comes back after the visibility
timeout. Either way it runs again and is not dead-lettered.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task, current_task, shared_task, states
from celery.app.task import get_actual_ignore_result
from celery.exceptions import Reject
from flask import current_app

from ..data.db import db
from .dead_letter import ON_DEAD_LETTER
from .idempotency import run_once
from .retry import RetryPolicy, is_broker_error, is_transient

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
                if task.app.conf.task_track_started:
                    _report_started(task)
                idem_key = key(*args, **kwargs) if key else None
                if idem_key is None:
                    result = fn(*args, **kwargs)
                else:
                    result = run_once(idem_key, name, task.request.id, lambda: fn(*args, **kwargs))
                db.session.commit()  # the effect and its key: a failure here is classified too
                return result
            except Exception as exc:
                if not is_transient(exc):
                    raise
                policy = RetryPolicy.from_config(current_app.config)
                if task.request.retries >= policy.max_retries:
                    raise  # retries exhausted: a final failure, dead-lettered
                _discard_session()
                raise retry(task, exc, policy.delay(task.request.retries, exc), policy) from exc

        if on_dead_letter is not None:
            ON_DEAD_LETTER[name] = on_dead_letter
        if "time_limit" in options or "soft_time_limit" in options:
            OWN_TIME_LIMITS.add(name)
        # `started` is reported by `run`, where a result store that is down is retried
        options["track_started"] = False
        # Celery checks call arguments against this signature when a task is sent.
        run.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
        return shared_task(name=name, ignore_result=not store_result, **options)(run)

    return decorate


def retry(task: Task, exc: BaseException, countdown: float, policy: RetryPolicy) -> BaseException:
    """The exception that ends this attempt: Celery's `Retry` once the retry is published, or,
    when the broker cannot take it, `Reject` with requeue, so the message is not lost."""
    try:
        retrying: BaseException = task.retry(
            exc=exc, countdown=countdown, max_retries=policy.max_retries, throw=False
        )
    except Reject as rejected:
        if not is_broker_error(rejected.reason):
            raise  # the retry itself is unsendable (Celery rejects it): a final failure
        # Celery's own Reject here has requeue=False: with acks_late the message would be
        # dropped with the attempt. Requeued, it waits in Redis until the broker is back.
        requeue: BaseException = Reject(rejected.reason, requeue=True)
        return requeue
    return retrying


def _report_started(task: Task) -> None:
    # What Celery's tracer stores for `task_track_started`, but inside the classified region.
    request = task.request
    if request.called_directly or request.is_eager or get_actual_ignore_result(task, request):
        return
    meta = {"pid": os.getpid(), "hostname": request.hostname}
    task.backend.store_result(request.id, meta, states.STARTED, request=request)


def _discard_session() -> None:
    # The attempt's rows go before the retry; with the database gone the rollback may fail
    # too, and the session is removed after the task either way.
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001, S110 - the connection is already invalid
        pass
