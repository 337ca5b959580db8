"""Worker heartbeat: a file touched only while the consumer is connected and consuming.

`celery inspect ping` is a poor liveness probe: it needs remote control, costs a broadcast and
answers while the worker consumes nothing. Instead a consumer bootstep touches the
`WORKER_HEARTBEAT_FILE` setting's file every few seconds from the consumer's own timer. The step
starts when the consumer has connected and declared its queues, and stops when the connection is
lost, so a stale file means "not consuming". The same tick renews the worker's key in the
registry of live workers (`service.worker.registry`), removed again when the step stops, and
prunes the in-flight sets of the worker's queues (`service.worker.inflight`). All of that goes
through a Redis client of its own, never the consumer's broker connection.
`python -m service.worker.probes worker` reads the file.

The step brings in `service.worker.reconnect.ReleaseChannels`, which keeps a Redis restart from
stopping the worker, so that one registration in `celery_init_app` adds both.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import bootsteps

from .inflight import prune
from .registry import announce, withdraw

#: Seconds between touches; probes should allow several missed beats.
INTERVAL = 5.0
#: Beats a worker may miss before the registry forgets it (a killed worker never withdraws).
MISSED_BEATS = 3

log = logging.getLogger(__name__)


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: touch the heartbeat file and renew the worker's registry key while
    consuming; remove both when stopping.

    Celery instantiates steps itself, so the file is a class attribute: add the class that
    `writing_to(path)` returns.
    """

    requires = {"celery.worker.consumer.tasks:Tasks", "service.worker.reconnect:ReleaseChannels"}
    path: Path

    @classmethod
    def writing_to(cls, path: str | Path) -> type[Heartbeat]:
        """This step, writing to `path`."""
        return type(cls.__name__, (cls,), {"path": Path(path), "__module__": cls.__module__})

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        self.beat(parent)
        self.tref = parent.timer.call_repeatedly(INTERVAL, self.beat, (parent,), priority=10)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        self.path.unlink(missing_ok=True)
        try:
            withdraw(parent.app, parent.hostname)
        except Exception as exc:  # noqa: BLE001 - the key expires by itself
            log.warning("could not remove the worker's registry key: %s", exc)

    shutdown = stop

    def beat(self, parent: Any) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            queues = [q.name for q in parent.task_consumer.queues]
            concurrency = parent.controller.concurrency
            announce(parent.app, parent.hostname, queues, concurrency, INTERVAL * MISSED_BEATS)
            prune(parent.app, queues)
        except Exception as exc:  # noqa: BLE001 - a failed beat shows up as a stale file
            log.warning("heartbeat failed: %s", exc)
