"""The official Flask/Celery example task, kept as the smallest end-to-end check."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="jobs.add", ignore_result=False)
def add_together(a: int, b: int) -> int:
    """Return a + b; the result is stored so the API can report it."""
    return a + b
