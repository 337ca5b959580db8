"""The one catalogue of Celery signal receivers, grouped by the process and moment they run in.

Every receiver the service connects is here, and each only calls into the module that owns the
behaviour; nothing else in the package connects to a signal. Which process a signal fires in
matters (Celery's signals guide): publishing signals fire in whatever process sends the task
(gunicorn, beat, a task that enqueues another), `task_received` and `task_revoked` in a worker's
main process, task execution signals in the pool child that runs the task.

Receivers that need nothing but the signal's arguments are connected when this module is
imported (by `service.celery_app`). Those that need the Flask app are connected per app by
`connect_app`, and check that the signal concerns their own app, because a process may build
several apps (the tests do).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery, Task
from celery.signals import (
    after_task_publish,
    before_task_publish,
    celeryd_init,
    setup_logging,
    task_failure,
    task_postrun,
    task_prerun,
    task_received,
    task_rejected,
    task_retry,
    task_revoked,
    task_success,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from flask import Flask

from . import beat, routing
from .data.db import db
from .jobs import lifecycle, outbox
from .observability import logging as logs
from .observability import metrics
from .reliability import dead_letter
from .reliability.task import leave_limits_to_the_consumer

__all__ = ["connect_app"]


# - Publishing: in the process that sends the task -------------------------------------------


@before_task_publish.connect
def _before_publish(
    sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any
) -> None:
    leave_limits_to_the_consumer(sender, headers)
    lifecycle.stamp_not_a_job(headers)
    logs.carry_request_id(headers)
    # always: the exporter reads it for the oldest message's age, whoever counts
    metrics.stamp_publish_time(headers)


@after_task_publish.connect
def _after_publish(sender: str | None = None, routing_key: str | None = None, **_: Any) -> None:
    if metrics.enabled():
        metrics.count_sent(sender, routing_key)


# - Worker main process, starting: before it selects its queues ------------------------------


@celeryd_init.connect
def _refuse_unknown_queues(
    conf: Any = None, options: dict[str, Any] | None = None, **_: Any
) -> None:
    # Celery would raise a traceback advising task_create_missing_queues; a worker on a queue
    # nothing routes to would run no task, so it exits at once naming the queues it may consume.
    if conf is None or conf.task_create_missing_queues or not conf.task_queues:
        return
    known = [q.name for q in conf.task_queues]
    requested = (options or {}).get("queues") or ()
    if isinstance(requested, str):
        requested = requested.split(",")
    problem = routing.unknown_queues_message(requested, known)
    if problem:
        print(problem, file=sys.stderr, flush=True)
        raise SystemExit(os.EX_CONFIG)


# - Worker main process: messages received, revoked -------------------------------------------


@task_received.connect
def _task_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    dead_letter.remember_delivery(request)
    if metrics.enabled() and request is not None:
        metrics.count_received(request)


@task_revoked.connect
def _task_revoked(sender: Task | None = None, request: Any = None, **_: Any) -> None:
    if metrics.enabled() and sender is not None and request is not None:
        metrics.count_revoked(sender, request)


@task_rejected.connect
def _task_rejected(message: Any = None, **_: Any) -> None:
    if metrics.enabled():
        metrics.count_rejected(message)


# - Pool child: task execution ---------------------------------------------------------------


@task_prerun.connect
def _task_prerun(sender: Task | None = None, task_id: str | None = None, **_: Any) -> None:
    if metrics.enabled() and sender is not None and task_id:
        metrics.task_started(sender, task_id)


@task_success.connect
def _task_success(sender: Task | None = None, **_: Any) -> None:
    if metrics.enabled() and sender is not None:
        metrics.count_succeeded(sender)


@task_retry.connect
def _task_retry(request: Any = None, **_: Any) -> None:
    if metrics.enabled() and request is not None:
        metrics.count_retried(request)


@task_postrun.connect
def _task_postrun(sender: Task | None = None, task_id: str | None = None, **_: Any) -> None:
    if metrics.enabled() and sender is not None and task_id:
        metrics.task_finished(sender, task_id)


@worker_process_shutdown.connect
def _pool_process_shutdown(pid: int | None = None, **_: Any) -> None:
    # Not guaranteed to run (a killed child never does); scrapes also drop dead pids' gauges.
    metrics.process_died(pid or os.getpid())


# - Per app: receivers that need the Flask app ------------------------------------------------


def connect_app(flask_app: Flask, celery_app: Celery) -> None:
    """Connect the receivers that act for `flask_app` and its Celery app."""

    # Worker and beat: a connected receiver stops them from installing Celery's own log
    # handlers, which would drop the app's format (JSON) and the request and task ids.
    @setup_logging.connect(weak=False)
    def _keep_the_app_log_format(loglevel: int | str | None = None, **_: Any) -> None:
        logs.configure(flask_app.config["LOG_FORMAT"], loglevel or flask_app.config["LOG_LEVEL"])

    # Pool child start: children inherit the parent's pooled database connections, and a
    # socket shared across processes corrupts, so every child starts with an empty pool.
    @worker_process_init.connect(weak=False)
    def _fresh_database_connections(**_: Any) -> None:
        with flask_app.app_context():
            db.engine.dispose(close=False)

    # A final failure: in the pool child for an exception, in the main process for a hard time
    # limit. Only this app's tasks: another app's failure is not ours to record.
    @task_failure.connect(weak=False)
    def _dead_letter(
        sender: Task | None = None,
        task_id: str = "",
        exception: BaseException | None = None,
        args: Any = None,
        kwargs: Any = None,
        einfo: Any = None,
        **_: Any,
    ) -> None:
        if sender is not None and sender.app is celery_app and exception is not None:
            if metrics.enabled():
                metrics.count_failed(sender, exception)
            dead_letter.record(flask_app, sender, task_id, exception, args, kwargs, einfo)
            if lifecycle.may_have_row(sender.request):
                lifecycle.failed(flask_app, task_id, exception)

    # Pool child: the job's row follows its task (jobs enqueued by the API; others have none,
    # and their messages say so). A task whose `started` moved no row has none to finish
    # either: one transaction, not two.
    rowless: set[str] = set()

    @task_prerun.connect(weak=False)
    def _job_started(sender: Task | None = None, task_id: str = "", **_: Any) -> None:
        if sender is not None and sender.app is celery_app and task_id:
            if (
                not lifecycle.may_have_row(sender.request)
                or lifecycle.started(flask_app, task_id) is False
            ):
                rowless.add(task_id)

    @task_retry.connect(weak=False)
    def _job_retrying(
        sender: Task | None = None, request: Any = None, reason: Any = None, **_: Any
    ) -> None:
        if sender is not None and sender.app is celery_app and request is not None:
            if lifecycle.may_have_row(request):
                lifecycle.retrying(flask_app, request.id, reason)

    @task_postrun.connect(weak=False)
    def _job_succeeded(
        sender: Task | None = None,
        task_id: str = "",
        retval: Any = None,
        state: str | None = None,
        **_: Any,
    ) -> None:
        if task_id in rowless:
            rowless.discard(task_id)
        elif sender is not None and sender.app is celery_app and state == "SUCCESS":
            lifecycle.succeeded(flask_app, task_id, retval)

    # Beat, the leader only (it alone ticks): publish the jobs whose request could not.
    beat.after_tick(celery_app, outbox.Relay(flask_app, celery_app))

    # Worker main process, before the pool starts: a past run's metric files would be summed in.
    @worker_init.connect(weak=False)
    def _fresh_metrics_directory(sender: Any = None, **_: Any) -> None:
        if _ours(sender) and metrics.enabled():
            metrics.reset_directory()

    # Worker main process, consuming: serve the pool's metrics (never from a child).
    @worker_ready.connect(weak=False)
    def _serve_metrics(sender: Any = None, **_: Any) -> None:
        port = int(flask_app.config["WORKER_METRICS_PORT"])
        if _ours(sender) and metrics.enabled():
            metrics.worker_up(sender.hostname, up=True)
            if port:
                metrics.serve(port, flask_app.config["METRICS_ADDRESS"])

    @worker_shutdown.connect(weak=False)
    def _worker_down(sender: Any = None, **_: Any) -> None:
        if _ours(sender) and metrics.enabled():
            metrics.worker_up(sender.hostname, up=False)

    def _ours(sender: Any) -> bool:
        return getattr(sender, "app", None) is celery_app
