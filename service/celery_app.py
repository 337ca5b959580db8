"""Celery wired to Flask the official way: `celery_init_app` and a Task class with an app context.

Every task body runs inside `app.app_context()`, and the database session is the task's own:
committed when the task returns, rolled back when it raises, removed either way, so nothing
leaks into the next task a worker process runs.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.signals import task_failure, worker_process_init
from flask import Flask

from . import scaling  # noqa: F401 - connects the in-flight signal handlers
from .config import celery_settings, check_time_budget
from .db import db
from .liveness import Heartbeat
from .reliability import dead_letter


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
    celery_app.config_from_object(celery_settings(app.config["CELERY"]))
    celery_app.set_default()
    celery_app.steps["consumer"].add(Heartbeat)
    check_time_budget(celery_app.conf, [t.time_limit for t in celery_app.tasks.values()])
    app.extensions["celery"] = celery_app

    # Handlers are connected per app; a process that builds several apps (tests) must not
    # let one app's handler act on another app's tasks.
    @worker_process_init.connect(weak=False)
    def _fresh_connections(**_: Any) -> None:
        # Prefork children inherit the parent's pooled database connections; sharing a socket
        # across processes corrupts it, so every child starts with an empty pool.
        with app.app_context():
            db.engine.dispose(close=False)

    @task_failure.connect(weak=False)
    def _dead_letter(
        sender: Task | None = None,
        task_id: str = "",
        exception: BaseException | None = None,
        args: Any = None,
        kwargs: Any = None,
        einfo: Any = None,
        **_: Any,
    ) -> None:
        if sender is not None and sender.app is celery_app and exception is not None:
            dead_letter.record(app, sender, task_id, exception, args, kwargs, einfo)

    return celery_app
