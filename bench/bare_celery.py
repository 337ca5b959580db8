"""Plain Celery, the baseline of `bench.drain` and `bench.pickup`: no Flask, no project code.

    BENCH_BROKER_URL=redis://... celery -A bench.bare_celery worker --pool prefork -c 2

The same delivery settings as the project's (`service.config`): acknowledged after the task,
requeued when its process dies, one message reserved per process, the same visibility
timeout, JSON messages; everything else is Celery's default (task events off, no results).
"""

from __future__ import annotations

import os

from celery import Celery

from bench.probe import note_start

#: The project's visibility timeout under its default time limits (`service.budget`).
VISIBILITY_TIMEOUT = 3600

app = Celery("bare", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    task_default_queue="default",
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
)


@app.task(name="bench.noop")
def noop(n: int) -> int:
    """The workload: nothing."""
    return n


@app.task(name="bench.started")
def started(key: str) -> None:
    """Pickup latency: note when the task began (read by `bench.pickup`)."""
    note_start(key)
