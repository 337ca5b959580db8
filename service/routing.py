"""The one routing table: which queue every task goes to, and which worker group consumes it.

Each queue is a Redis list of the same name in the broker's database (contract 1), so these
strings are also the `listName` of the chart's KEDA triggers. The chart's default
`workers.groups` must equal `WORKER_GROUPS`; a test compares them.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Queue names. Lower-case ``[a-z0-9_]``: they are Redis keys and KEDA list names.
QUEUES: tuple[str, ...] = ("default", "email", "pdf", "exports", "webhooks")

#: Task name -> queue. Task names are explicit and stable, so moving code keeps routing.
TASK_ROUTES: dict[str, str] = {
    "jobs.add": "default",
    "notify.send_welcome_email": "email",
    "notify.send_trial_reminder": "email",
    "invoices.generate_pdf": "pdf",
    "exports.export_table": "exports",
    "webhooks.deliver": "webhooks",
    "periodic.expire_trials": "default",
    "periodic.queue_trial_reminders": "default",
}

#: Worker group -> the queues its workers consume. Locally one worker per group
#: (`make run`); on Kubernetes one Deployment and one ScaledObject per group.
WORKER_GROUPS: dict[str, tuple[str, ...]] = {
    "general": ("default", "email"),
    "reports": ("pdf", "exports"),
    "webhooks": ("webhooks",),
}


def queue_for(task_name: str) -> str:
    """Return the queue a task is routed to; unknown names are a programming error."""
    return TASK_ROUTES[task_name]


def celery_routes() -> dict[str, dict[str, str]]:
    """The table in the shape of Celery's `task_routes` setting."""
    return {name: {"queue": queue} for name, queue in TASK_ROUTES.items()}


def unknown_queues_message(requested: Iterable[str], known: Iterable[str]) -> str:
    """Why a worker cannot consume `requested`: each queue not in `known` and the known ones;
    empty when every requested queue is known."""
    known = list(known)
    unknown = [q for q in requested if q not in known]
    if not unknown:
        return ""
    return (
        f"worker refuses to start: queue(s) {', '.join(repr(q) for q in unknown)} not defined by "
        f"the app; the known queues are {', '.join(known)} (service/routing.py QUEUES). "
        "Consume only those in --queues, or add the queue and its routes to service/routing.py."
    )
