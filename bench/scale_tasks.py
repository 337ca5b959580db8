"""Tasks for the metrics-at-scale benchmark: one trivial body under many task names, so that
the worker's metrics carry as many `name` label values as a real app's task catalogue."""

from __future__ import annotations

from typing import Any

from celery import shared_task

#: How many distinct task names the benchmark can spread its tasks over.
NAMES = 50


def task_name(i: int) -> str:
    return f"bench.scale.t{i:02d}"


def _task(i: int) -> Any:
    @shared_task(name=task_name(i))
    def noop(n: int) -> int:
        return n

    return noop


TASKS = [_task(i) for i in range(NAMES)]
