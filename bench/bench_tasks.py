"""Tasks for benchmarks only: the same trivial body, bare and with the project's discipline."""

from __future__ import annotations

from celery import shared_task

from service.reliability.task import job_task


@shared_task(name="bench.bare")
def bare(n: int) -> int:
    """A plain Celery task: the baseline."""
    return n


@job_task("bench.ledgered", key=lambda n: f"bench:{n}", store_result=False)
def ledgered(n: int) -> int:
    """The same body through job_task with an idempotency key (one ledger row per run)."""
    return n
