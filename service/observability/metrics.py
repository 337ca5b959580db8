"""Prometheus metrics fed by Celery signals and Flask request hooks.

Task metrics carry celery-exporter's names, types and labels (`name`, `hostname`, `queue_name`;
`celery_task_failed_total` also `exception`), so its dashboards and alerts work unchanged
(contract 6). Each is counted in the process where its moment happens: `sent` in the publisher
(gunicorn, beat, a task that enqueues), `received`/`revoked`/`rejected` in a worker's main
process, `started`/`succeeded`/`failed`/`retried` and the histograms in the pool child that ran
the task. The receivers are in `service.signals`; this module only counts.

Prefork children and gunicorn workers are separate processes, so values go through
prometheus_client's multiprocess mode: `PROMETHEUS_MULTIPROC_DIR` must be set before this module
is imported, private to one worker or one gunicorn (a pod's emptyDir), and emptied when that
process tree starts (`reset_directory`). The worker's main process serves the sum of its
children on `WORKER_METRICS_PORT`; gunicorn's workers each answer `/metrics` with the sum of all
of them. A process that died leaves its counters (they stay true) but not its live gauges.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from celery.utils.nodenames import nodesplit
from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from . import compaction

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The message header that carries the publish time (epoch seconds) to the worker.
PUBLISHED_AT_HEADER = "published_at"
TASK_LABELS = ("name", "hostname", "queue_name")
#: Waiting can take from milliseconds (an idle worker) to the visibility timeout (a backlog).
QUEUE_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                      600, 1800, 3600, float("inf"))  # fmt: skip


def _task_counter(event: str, documentation: str, *extra: str) -> Counter:
    return Counter(f"celery_task_{event}", documentation, [*TASK_LABELS[:2], *extra, "queue_name"])


TASKS_SENT = _task_counter("sent", "Task messages published.")
TASKS_RECEIVED = _task_counter("received", "Task messages a worker received.")
TASKS_STARTED = _task_counter("started", "Tasks a worker started to execute.")
TASKS_SUCCEEDED = _task_counter("succeeded", "Tasks that returned.")
TASKS_FAILED = _task_counter("failed", "Tasks that failed for good (not retried).", "exception")
TASKS_REJECTED = _task_counter("rejected", "Messages a worker rejected: not a task, or invalid.")
TASKS_REVOKED = _task_counter("revoked", "Tasks revoked before or while they ran.")
TASKS_RETRIED = _task_counter("retried", "Tasks that failed and will be retried.")
TASK_RUNTIME = Histogram("celery_task_runtime", "Seconds a task that succeeded ran.", TASK_LABELS)
TASK_QUEUE_WAIT = Histogram(
    "celery_task_queue_wait_time",
    "Seconds from publish (or its eta) to the start of the task.",
    TASK_LABELS,
    buckets=QUEUE_WAIT_BUCKETS,
)
WORKER_UP = Gauge(
    "celery_worker_up", "1 while the worker runs.", ["hostname"], multiprocess_mode="livemax"
)
WORKER_TASKS_ACTIVE = Gauge(
    "celery_worker_tasks_active",
    "Tasks the worker is executing now.",
    ["hostname"],
    multiprocess_mode="livesum",
)
HTTP_REQUESTS = Counter(
    "flask_celery_http_requests", "HTTP requests answered.", ["endpoint", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "flask_celery_http_request_duration_seconds",
    "Seconds from a request's arrival to its answer.",
    ["endpoint", "method"],
)
ENQUEUES = Counter(
    "flask_celery_enqueue",
    "Enqueue requests by outcome: accepted, replayed (Idempotency-Key), refused (4xx), "
    "broker_unavailable (503).",
    ["endpoint", "outcome"],
)

_settings: dict[str, Any] = {"enabled": True, "hostname": None}
_started: dict[str, float] = {}


def configure(enabled: bool, hostname_label: str | None) -> None:
    """Count (or not), with `hostname_label` as every `hostname` label (None: the host's name)."""
    _settings["enabled"], _settings["hostname"] = enabled, hostname_label


def enabled() -> bool:
    """Whether this process counts."""
    return bool(_settings["enabled"])


def _hostname(node: str | None = None) -> str:
    """The `hostname` label: the configured constant, else the host part of a node name."""
    if _settings["hostname"]:
        return str(_settings["hostname"])
    if node:
        return str(nodesplit(node)[1])
    return socket.gethostname()


def _queue(delivery_info: dict[str, Any] | None) -> str:
    info = delivery_info or {}
    return str(info.get("routing_key") or info.get("queue") or "")


def _task_labels(task: Any) -> dict[str, str]:
    req = task.request
    return {
        "name": task.name,
        "hostname": _hostname(getattr(req, "hostname", None)),
        "queue_name": _queue(getattr(req, "delivery_info", None)),
    }


def _request_labels(req: Any) -> dict[str, str]:
    """Labels from a worker-side Request (main process signals)."""
    return {
        "name": req.task.name if req.task is not None else req.name,
        "hostname": _hostname(getattr(req, "hostname", None)),
        "queue_name": _queue(getattr(req, "delivery_info", None)),
    }


# - Publisher ---------------------------------------------------------------------------------


def stamp_publish_time(headers: dict[str, Any] | None) -> None:
    """Record when the message is published, for the queue-wait histogram."""
    if headers is not None:
        headers.setdefault(PUBLISHED_AT_HEADER, time.time())


def count_sent(task_name: str | None, routing_key: str | None) -> None:
    TASKS_SENT.labels(
        name=task_name or "", hostname=_hostname(), queue_name=routing_key or ""
    ).inc()


# - Worker main process -----------------------------------------------------------------------


def count_received(req: Any) -> None:
    TASKS_RECEIVED.labels(**_request_labels(req)).inc()


def count_revoked(task: Any, context: Any) -> None:
    """A received task was revoked (`context` is its message's context, not a Request)."""
    TASKS_REVOKED.labels(
        name=task.name,
        hostname=_hostname(getattr(context, "hostname", None)),
        queue_name=_queue(getattr(context, "delivery_info", None)),
    ).inc()


def count_rejected(message: Any) -> None:
    headers = getattr(message, "headers", None) or {}
    TASKS_REJECTED.labels(
        name=str(headers.get("task") or ""),
        hostname=_hostname(),
        queue_name=_queue(getattr(message, "delivery_info", None)),
    ).inc()


def worker_up(node: str, up: bool) -> None:
    WORKER_UP.labels(hostname=_hostname(node)).set(1 if up else 0)


# - Pool child: task execution ----------------------------------------------------------------


def task_started(task: Any, task_id: str) -> None:
    """Count the start, the task as active, and how long it waited since its publish (or eta)."""
    labels = _task_labels(task)
    now = time.time()
    _started[task_id] = time.monotonic()
    TASKS_STARTED.labels(**labels).inc()
    WORKER_TASKS_ACTIVE.labels(hostname=labels["hostname"]).inc()
    published = _published_at(task.request)
    if published is not None:
        TASK_QUEUE_WAIT.labels(**labels).observe(max(0.0, now - published))


def _published_at(req: Any) -> float | None:
    """The publish time, or the eta when the task was not due before it."""
    published = getattr(req, PUBLISHED_AT_HEADER, None)
    if published is None:
        published = (getattr(req, "headers", None) or {}).get(PUBLISHED_AT_HEADER)
    if published is None:
        return None
    eta = getattr(req, "eta", None)
    if eta:
        due = eta.timestamp() if hasattr(eta, "timestamp") else _parse_eta(eta)
        if due is not None:
            return max(float(published), due)
    return float(published)


def _parse_eta(eta: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(eta).timestamp()
    except ValueError:
        return None


def task_finished(task: Any, task_id: str) -> None:
    """The task is no longer active (whatever its outcome)."""
    _started.pop(task_id, None)
    WORKER_TASKS_ACTIVE.labels(hostname=_task_labels(task)["hostname"]).dec()


def count_succeeded(task: Any) -> None:
    labels = _task_labels(task)
    TASKS_SUCCEEDED.labels(**labels).inc()
    started = _started.get(task.request.id)
    if started is not None:
        TASK_RUNTIME.labels(**labels).observe(time.monotonic() - started)


def count_failed(task: Any, exception: BaseException) -> None:
    TASKS_FAILED.labels(**_task_labels(task), exception=type(exception).__name__).inc()


def count_retried(req: Any) -> None:
    TASKS_RETRIED.labels(**_request_labels_of_context(req)).inc()


def _request_labels_of_context(req: Any) -> dict[str, str]:
    """Labels from a task's request context (task_retry's `request`)."""
    return {
        "name": str(getattr(req, "task", "") or ""),
        "hostname": _hostname(getattr(req, "hostname", None)),
        "queue_name": _queue(getattr(req, "delivery_info", None)),
    }


# - Multiprocess bookkeeping and serving ------------------------------------------------------


def multiprocess_dir() -> Path | None:
    """The multiprocess directory, when this process tree uses one."""
    value = os.environ.get(MULTIPROC_DIR_ENV)
    return Path(value) if value else None


def reset_directory() -> None:
    """Empty the multiprocess directory: a past run's files would be summed in (call once, when
    the process tree starts, before any value is written)."""
    directory = multiprocess_dir()
    if directory is None:
        return
    if directory.exists():
        for entry in directory.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    directory.mkdir(parents=True, exist_ok=True)


def process_died(pid: int) -> None:
    """Forget the live gauges of a process that ended (its counters stay)."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(pid, str(directory))


_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def _forget_dead_processes(directory: Path) -> None:
    # A child killed by a signal never runs its shutdown hook; its live gauges would count on.
    for path in glob.glob(str(directory / "gauge_live*_*.db")):
        match = _LIVE_FILE.search(path)
        if match and not _alive(int(match.group(1))):
            Path(path).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _MultiProcessCollector(multiprocess.MultiProcessCollector):
    """Sums every process's files, after dropping the live gauges of processes that died and
    folding the counters and histograms of processes that ended into one file per type (so a
    scrape costs the same after a thousand replaced pool processes as after none)."""

    def __init__(self, registry: CollectorRegistry, directory: Path) -> None:
        super().__init__(registry, path=str(directory))
        self._directory = directory

    def collect(self) -> Iterable[Any]:
        # the read stays under the lock: another process's fold, half done, would count twice
        with compaction.lock(self._directory):
            _forget_dead_processes(self._directory)
            compaction.compact(self._directory)
            return list(super().collect())


def registry() -> CollectorRegistry:
    """What a scrape of this process tree returns."""
    directory = multiprocess_dir()
    if directory is None:
        return REGISTRY
    combined = CollectorRegistry()
    _MultiProcessCollector(combined, directory)
    return combined


def serve(port: int, address: str) -> None:
    """Serve `/metrics` from a thread of this process (a worker's main process)."""
    start_http_server(port, addr=address, registry=registry())


def exposition() -> Response:
    """The `/metrics` answer of web."""
    return Response(generate_latest(registry()), mimetype=CONTENT_TYPE_LATEST)


# - Web ---------------------------------------------------------------------------------------


def _enqueue_outcome(status: int, replayed: bool) -> str:
    if status == 202:
        return "replayed" if replayed else "accepted"
    if status == 503:
        return "broker_unavailable"
    return "refused"


def init_app(app: Flask) -> None:
    """Count requests and enqueues, and answer `/metrics` (when METRICS_ENABLED)."""
    configure(app.config["METRICS_ENABLED"], app.config["METRICS_HOSTNAME_LABEL"])
    if not app.config["METRICS_ENABLED"]:
        return

    @app.before_request
    def _start_timer() -> None:
        request.environ["flask_celery.started"] = time.perf_counter()

    @app.after_request
    def _count_request(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if endpoint == "/metrics":
            return response
        started = request.environ.get("flask_celery.started")
        HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        if started is not None:
            HTTP_LATENCY.labels(endpoint, request.method).observe(time.perf_counter() - started)
        if request.method == "POST" and (request.endpoint or "").startswith(_ENQUEUE_ENDPOINTS):
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            ENQUEUES.labels(endpoint, _enqueue_outcome(response.status_code, replayed)).inc()
        return response

    app.add_url_rule("/metrics", "metrics", exposition)


#: Flask endpoints whose POSTs enqueue a job.
_ENQUEUE_ENDPOINTS = ("jobs.", "dead_letters.redrive")
