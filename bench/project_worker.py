"""The project's worker for `bench.drain`, with pieces switched off by bench-only means.

    BENCH_OFF=inflight,heartbeat,job_rows celery -A bench.project_worker worker ...

`service.make_celery` as it ships, plus the benchmark's tasks; BENCH_OFF (comma-separated)
replaces pieces that have no operator setting of their own with nothing, in this process only:
`inflight` (the in-flight sets KEDA counts), `heartbeat` (the consumer step: liveness file,
worker registry, in-flight pruning), `job_rows` (the job row's started/succeeded updates).
Metrics, task events and the log level and format have settings (METRICS_ENABLED,
CELERY__WORKER_SEND_TASK_EVENTS, --loglevel, LOG_FORMAT): the benchmark sets those.
"""

from __future__ import annotations

import os
from typing import Any

import bench.bench_tasks  # noqa: F401 - registers the benchmark's tasks
from service.jobs import lifecycle
from service.make_celery import celery_app, flask_app
from service.worker import heartbeat, inflight

__all__ = ["celery_app", "flask_app"]

OFF = {piece for piece in os.environ.get("BENCH_OFF", "").split(",") if piece}
PIECES = ("inflight", "heartbeat", "job_rows")


def _nothing(*_: Any, **__: Any) -> None:
    return None


if OFF - set(PIECES):
    raise SystemExit(f"BENCH_OFF: unknown piece(s) {sorted(OFF - set(PIECES))}; known: {PIECES}")
if "inflight" in OFF:
    inflight.track_in_pipelines = _nothing  # type: ignore[assignment]
if "heartbeat" in OFF:
    steps = celery_app.steps["consumer"]
    for step in [s for s in steps if isinstance(s, type) and issubclass(s, heartbeat.Heartbeat)]:
        steps.discard(step)
if "job_rows" in OFF:
    lifecycle.started = lifecycle.succeeded = _nothing  # type: ignore[assignment]
