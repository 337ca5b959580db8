"""A worker step that refuses, at start, a broker database other than the one KEDA counts.

KEDA's redis triggers read each queue's list and in-flight set in one database index
(`redis.brokerDatabase` in the chart, rendered into the worker as `FLASK_KEDA_DATABASE_INDEX`),
while the worker consumes from the database its broker URL selects. Were they different, KEDA
would scale the group on lists nobody fills, and an idle-looking group could go to zero with
its queue full. The broker URL may come from a Secret the chart cannot read, so the worker
compares the two when it starts.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from ..redis_options import database_index


def database_mismatch(broker_url: str, keda_index: int | None) -> str | None:
    """Why a worker on `broker_url` must not run under KEDA counting `keda_index`; None if it
    may (no KEDA, or a broker that is not Redis)."""
    used = database_index(broker_url)
    if keda_index is None or used is None or used == keda_index:
        return None
    return (
        f"KEDA counts this worker's queues in Redis database {keda_index} "
        "(FLASK_KEDA_DATABASE_INDEX, the chart's redis.brokerDatabase) but the broker URL "
        f"(FLASK_CELERY__BROKER_URL) selects database {used}, so KEDA would scale on queues "
        f"this worker never consumes; end the broker URL with /{keda_index}, or set "
        f"redis.brokerDatabase to {used}"
    )


class ScalerDatabaseGuard(bootsteps.Step):  # type: ignore[misc]
    """Worker step: exit at start, naming both indexes, when the broker's database is not the
    one KEDA counts; `expecting(index)` returns the step for the app's setting."""

    keda_index: int | None = None

    @classmethod
    def expecting(cls, keda_index: int | None) -> type[ScalerDatabaseGuard]:
        """This step, comparing the broker's database with `keda_index`."""
        return type(cls.__name__, (cls,), {"keda_index": keda_index, "__module__": cls.__module__})

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        problem = database_mismatch(worker.app.conf.broker_url or "", self.keda_index)
        if problem:
            raise SystemExit(f"refusing to start: {problem}")
        super().__init__(worker, **kwargs)
