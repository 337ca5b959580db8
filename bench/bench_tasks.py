"""The benchmarks' workloads on the project's worker: the same no-op body, declared as the
project declares tasks (`job_task`, with and without an idempotency key) and as a plain Celery
task (no app context, no session), plus the pickup probe.

The plain Celery baseline (`bench.bare_celery`) declares the same names on an app of its own.
"""

from __future__ import annotations

from celery import Task, shared_task

from bench.probe import note_start
from service.reliability.task import job_task


@job_task("bench.ledgered", key=lambda n: f"bench:{n}", store_result=False)
def ledgered(n: int) -> int:
    """A job with an idempotency key: one ledger row per run."""
    return n


@job_task("bench.noop", store_result=False)
def noop(n: int) -> int:
    """A job without a key: the app context and the session, no ledger row."""
    return n


@shared_task(name="bench.plain", base=Task)
def plain(n: int) -> int:
    """A plain Celery task on the project's worker: no app context, no session."""
    return n


@job_task("bench.started", store_result=False)
def started(key: str) -> None:
    """Pickup latency: note when the task began (read by `bench.pickup`)."""
    note_start(key)
