"""Configuration defaults: one typed table, overridden by `FLASK_*` environment variables.

`create_app` loads `DEFAULTS`, then `app.config.from_prefixed_env()`, then an explicit mapping
(tests). Celery settings live under the `CELERY` key; `FLASK_CELERY__BROKER_URL` lands there as
an upper-case key, which `celery_settings` folds to the lower-case name Celery reads
(contract 4 in the design).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from celery.schedules import crontab
from kombu.entity import Queue

from .routing import QUEUES, celery_routes

#: Hard time limit of every task that sets none itself; a worker group sets its own with
#: FLASK_CELERY__TASK_TIME_LIMIT (a worker's `--time-limit` flag would lose to this setting).
TASK_TIME_LIMIT = 300
#: Redis redelivers an unacknowledged message after `visibility_timeout` seconds, so it must
#: exceed every hard time limit (contract 3). Unless set, it is the longest hard limit plus
#: this margin, and at least an hour, which is also the longest countdown the API accepts.
VISIBILITY_MARGIN = 300
MIN_VISIBILITY_TIMEOUT = 3600

CELERY_DEFAULTS: dict[str, Any] = {
    "broker_url": "redis://127.0.0.1:6379/0",
    "result_backend": "redis://127.0.0.1:6379/1",
    "task_default_queue": "default",
    "task_routes": celery_routes(),
    "task_queues": tuple(Queue(name, routing_key=name) for name in QUEUES),
    "task_create_missing_queues": False,
    # Crash safety: a message is acknowledged only after the task finished, and a task whose
    # worker process died is requeued instead of being marked failed.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_time_limit": TASK_TIME_LIMIT,
    "task_soft_time_limit": TASK_TIME_LIMIT - 30,
    "task_track_started": True,
    # Results are stored only by tasks that ask for it (`ignore_result=False`), and expire.
    "task_ignore_result": True,
    "result_expires": 24 * 3600,
    "result_extended": True,
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "timezone": "UTC",
    "enable_utc": True,
    "broker_connection_retry_on_startup": True,
    "broker_transport_options": {
        # Messages a dead worker held come back after visibility_timeout; workers sweep for
        # them every interval * throttle seconds (kombu: 100 s), and a worker killed during a
        # sweep holds its mutex until it expires (kombu: 300 s).
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 3,
        "unacked_mutex_expire": 60,
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
    },
    "result_backend_transport_options": {
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
        # Publishing subscribes to the result channel first; bound that wait like the publish.
        "retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    },
    # Publishing gives up quickly so that the API can answer 503 while the broker is down.
    "task_publish_retry_policy": {
        "max_retries": 2,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 1,
    },
    "worker_send_task_events": True,
    "task_send_sent_event": True,
    "worker_soft_shutdown_timeout": 0.0,
    "beat_scheduler": "redbeat.RedBeatScheduler",
    "beat_max_loop_interval": 5,
    "redbeat_key_prefix": "flask_celery:redbeat",
    "redbeat_lock_timeout": 25,
    "beat_schedule": {
        "expire-trials-nightly": {
            "task": "periodic.expire_trials",
            "schedule": crontab(minute=0, hour=2),
            "kwargs": {"schedule_entry": "expire-trials-nightly"},
        },
        "trial-reminders-hourly": {
            "task": "periodic.queue_trial_reminders",
            "schedule": crontab(minute=5),
            "kwargs": {"schedule_entry": "trial-reminders-hourly"},
        },
    },
}

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": "dev-only-change-me",
    "SQLALCHEMY_DATABASE_URI": None,  # None: a SQLite file in STORAGE_DIR's parent (instance)
    "SQLALCHEMY_ENGINE_OPTIONS": {},
    "STORAGE_DIR": None,  # None: <instance_path>/storage
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "SMTP_HOST": "127.0.0.1",
    "SMTP_PORT": 8025,
    "SMTP_USERNAME": None,
    "SMTP_PASSWORD": None,
    "SMTP_STARTTLS": False,
    "SMTP_TIMEOUT": 10,
    "MAIL_FROM": "Flask Celery <noreply@example.com>",
    "WEBHOOK_TIMEOUT": 10,
    "WEBHOOK_MAX_RESPONSE_BYTES": 64 * 1024,
    # CIDRs webhooks may reach although internal (service.egress); e.g. ["127.0.0.0/8"] locally
    "WEBHOOK_ALLOWED_NETWORKS": [],
    "WEBHOOK_USER_AGENT": "flask-celery-webhooks/0.1",
    "TRIAL_REMINDER_HOURS": 24,
    # The retry policy of every task (service.reliability.retry.RetryPolicy).
    "RETRY_MAX_RETRIES": 6,
    "RETRY_BACKOFF_BASE": 2.0,
    "RETRY_BACKOFF_MAX": 300.0,
    "EXPORT_BATCH_SIZE": 200,
    "LOG_FORMAT": "text",
    "LOG_LEVEL": "INFO",
    "CELERY": CELERY_DEFAULTS,
}


class ConfigError(ValueError):
    """A configuration that would break a delivery guarantee; the message names the values."""


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` updated by `override`, merging nested dicts instead of replacing them."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def celery_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Fold the `CELERY` mapping to the lower-case names Celery reads, and check it.

    `FLASK_CELERY__BROKER_URL` arrives as ``BROKER_URL``; Celery would read that as an old-style
    setting and ignore it next to ``broker_url``, so upper-case keys win over (and merge into)
    their lower-case defaults.
    """
    lower = {k: v for k, v in raw.items() if k == k.lower()}
    upper = {k.lower(): v for k, v in raw.items() if k != k.lower()}
    settings = merge(lower, upper)
    transport = settings.setdefault("broker_transport_options", {})
    transport.setdefault(
        "visibility_timeout",
        max(MIN_VISIBILITY_TIMEOUT, longest_time_limit(settings) + VISIBILITY_MARGIN),
    )
    # beat's schedule and leader lock live on the broker's Redis unless configured otherwise
    settings.setdefault("redbeat_redis_url", settings.get("broker_url"))
    settings.setdefault(
        "redbeat_redis_options", {"socket_connect_timeout": 3, "socket_timeout": 10}
    )
    check_time_budget(settings)
    return settings


def longest_time_limit(
    settings: Mapping[str, Any], task_limits: Iterable[float | None] = ()
) -> float:
    """The longest hard time limit any task can run under."""
    return max([float(settings.get("task_time_limit") or 0)] + [float(t) for t in task_limits if t])


def check_time_budget(
    settings: Mapping[str, Any], task_limits: Iterable[float | None] = ()
) -> None:
    """Refuse a hard time limit that Redis' visibility timeout would cut short (contract 3)."""
    limit = longest_time_limit(settings, task_limits)
    visibility = (settings.get("broker_transport_options") or {}).get("visibility_timeout")
    if limit and visibility and float(visibility) <= limit:
        raise ConfigError(
            f"broker_transport_options.visibility_timeout ({visibility}s) must be longer than "
            f"the longest hard time limit ({limit:g}s), or Redis redelivers tasks that are still "
            "running: raise FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout or lower "
            "FLASK_CELERY__TASK_TIME_LIMIT"
        )
