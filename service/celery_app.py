"""Celery wired to Flask the official way: `celery_init_app` and a Task class with an app context.

Every task body runs inside `app.app_context()`, and the database session is the task's own:
committed when the task returns, rolled back when it raises, removed either way, so nothing
leaks into the next task a worker process runs. Tasks declared with `job_task` commit inside
their retry policy's region (`service.reliability.task`), so a failed COMMIT is retried there;
the commit here is then a no-op, and remains for plain Celery tasks.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

from . import budget, signals
from .data.db import db
from .reliability.dead_letter import DeadLetterDrain
from .worker.channels import ConsumerChannel
from .worker.heartbeat import Heartbeat
from .worker.pools import PoolGuard
from .worker.scaling import ScalerDatabaseGuard


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app for `app`, configured from `app.config["CELERY"]`."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                try:
                    result = self.run(*args, **kwargs)
                    db.session.commit()
                    return result
                except BaseException:
                    db.session.rollback()
                    raise
                finally:
                    db.session.remove()

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    celery_app.steps["worker"].add(PoolGuard)
    celery_app.steps["worker"].add(ScalerDatabaseGuard.expecting(app.config["KEDA_DATABASE_INDEX"]))
    celery_app.steps["consumer"].add(Heartbeat.writing_to(app.config["WORKER_HEARTBEAT_FILE"]))
    celery_app.steps["consumer"].add(DeadLetterDrain.for_app(app))
    celery_app.steps["consumer"].add(ConsumerChannel)
    budget.check(celery_app.conf, [t.time_limit for t in celery_app.tasks.values()])
    signals.connect_app(app, celery_app)
    app.extensions["celery"] = celery_app
    return celery_app
