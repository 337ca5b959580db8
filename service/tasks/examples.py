"""The official Flask/Celery example task, kept as the smallest end-to-end check."""

from __future__ import annotations

from ..reliability.task import job_task


@job_task("jobs.add")
def add_together(a: int, b: int) -> int:
    """Return a + b; the result is stored so the API can report it."""
    return a + b
