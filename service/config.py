"""Configuration defaults: one typed table, overridden by `FLASK_*` environment variables.

`create_app` loads `DEFAULTS`, then `app.config.from_prefixed_env()`, then an explicit mapping
(tests). Celery settings live under the `CELERY` key; `FLASK_CELERY__BROKER_URL` lands there as
an upper-case key, which `celery_settings` folds to the lower-case name Celery reads
(contract 4 in the design).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery.schedules import crontab
from kombu import Queue

from .routing import QUEUES, celery_routes

#: Hard time limit every task gets unless its worker group passes ``--time-limit``.
TASK_TIME_LIMIT = 300
#: Redis redelivers an unacknowledged message after this long, so it must exceed every hard
#: time limit (contract 3); `celery_settings` refuses a configuration where it does not.
VISIBILITY_TIMEOUT = 3600

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
        "visibility_timeout": VISIBILITY_TIMEOUT,
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
        },
        "trial-reminders-hourly": {
            "task": "periodic.queue_trial_reminders",
            "schedule": crontab(minute=5),
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
    "WEBHOOK_USER_AGENT": "flask-celery-webhooks/0.1",
    "TRIAL_REMINDER_HOURS": 24,
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
    # beat's schedule and leader lock live on the broker's Redis unless configured otherwise
    settings.setdefault("redbeat_redis_url", settings["broker_url"])
    settings.setdefault("redbeat_redis_options", {"socket_connect_timeout": 3, "socket_timeout": 10})
    check_time_budget(settings)
    return settings


def check_time_budget(settings: Mapping[str, Any]) -> None:
    """Refuse a hard time limit that Redis' visibility timeout would cut short (contract 3)."""
    limit = settings.get("task_time_limit")
    visibility = (settings.get("broker_transport_options") or {}).get("visibility_timeout")
    if limit and visibility and float(visibility) <= float(limit):
        raise ConfigError(
            f"broker_transport_options.visibility_timeout ({visibility}s) must be longer than "
            f"task_time_limit ({limit}s), or Redis redelivers tasks that are still running: "
            "raise FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout or lower "
            "FLASK_CELERY__TASK_TIME_LIMIT"
        )
