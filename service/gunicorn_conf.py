"""gunicorn hooks for the metrics of its workers: `gunicorn -c python:service.gunicorn_conf`.

Every gunicorn worker writes its metric values to files in PROMETHEUS_MULTIPROC_DIR and answers
`/metrics` with the sum over all of them. The master empties the directory when it starts (a
restarted container keeps its emptyDir) and forgets the live gauges of a worker that exits.
"""

from __future__ import annotations

from typing import Any

from .observability import metrics


def on_starting(server: Any) -> None:
    metrics.reset_directory()


def child_exit(server: Any, worker: Any) -> None:
    metrics.process_died(worker.pid)
