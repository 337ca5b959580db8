"""Configuration: one typed table of settings, read from `FLASK_*` environment variables.

Every setting is a row of `SETTINGS` (the app's) or `CELERY_SETTINGS` (Celery's, under the
`CELERY` key): its name, type, default, one line of documentation and its environment variable.
`create_app` loads the defaults, then `app.config.from_prefixed_env()` (which also reaches into
nested keys with `__`), then each row's own variable converted by its type, then an explicit
mapping (tests); `derive` then fills the values that follow from others, and `check` refuses a
value of the wrong type, naming its variable.

`FLASK_CELERY__BROKER_URL` lands in `CELERY` as an upper-case key, which Celery would read as an
old-style name and ignore; `celery_settings` folds such keys to the lower-case names Celery reads
(contract 4 in the design). The README's configuration table is generated from these rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.schedules import crontab
from kombu.entity import Queue

from . import budget
from .budget import ConfigError
from .redis_options import RedisAccess
from .routing import QUEUES, celery_routes
from .worker.probes import DEFAULT_HEARTBEAT_FILE

__all__ = ["CELERY_SETTINGS", "ConfigError", "DEFAULTS", "SETTINGS", "Setting"]

ENV_PREFIX = "FLASK_"


@dataclass(frozen=True)
class Setting:
    """One row of the table: a setting, its type and default, and what it is for."""

    name: str
    #: The Python type of its value (int settings also refuse bools, float ones take ints).
    type: type
    default: Any
    doc: str
    #: True when None is a valid value (it then means "derive it", see `derive`).
    optional: bool = False
    #: The `CELERY` table's rows live one level down, under this key.
    parent: str | None = None
    #: The only values it takes, when there are few (empty: any value of its type).
    choices: tuple[Any, ...] = ()

    @property
    def env(self) -> str:
        """The environment variable that sets it (Celery's names in upper case, as guides
        spell them; the lower-case spelling works too)."""
        if self.parent:
            return f"{ENV_PREFIX}{self.parent}__{self.name.upper()}"
        return ENV_PREFIX + self.name

    def env_names(self) -> tuple[str, ...]:
        """Every variable that sets it."""
        if self.parent:
            return (self.env, f"{ENV_PREFIX}{self.parent}__{self.name}")
        return (self.env,)

    def parse(self, raw: str) -> Any:
        """Convert the variable's text to the setting's type, or raise ConfigError."""
        try:
            if self.type is str:
                return raw
            if self.type is bool:
                return _BOOLEANS[raw.strip().lower()]
            if self.type in (int, float):
                return self.type(raw)
            value = json.loads(raw)
        except (KeyError, ValueError):
            raise ConfigError(f"{self.env}={raw!r}: {self.expected()}") from None
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """Raise ConfigError unless `value` has this setting's type."""
        if value is None and self.optional:
            return
        accepted = (int, float) if self.type is float else self.type
        numeric = self.type in (int, float)
        if not isinstance(value, accepted) or (numeric and isinstance(value, bool)):
            raise ConfigError(f"{self.env}={value!r}: {self.expected()}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.env}={value!r}: expected one of {', '.join(self.choices)}")

    def expected(self) -> str:
        noun = _TYPE_NOUNS.get(self.type, self.type.__name__)
        return f"expected {noun}" + (" or null" if self.optional else "")


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLEANS |= {"0": False, "false": False, "no": False, "off": False}
_TYPE_NOUNS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a JSON list",
    dict: "a JSON object",
    tuple: "a list",
}


def _celery(name: str, type_: type, default: Any, doc: str, optional: bool = False) -> Setting:
    return Setting(name, type_, default, doc, optional=optional, parent="CELERY")


_SHORT_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}

#: Celery's settings as this project sets them; any other Celery setting may be added under
#: `CELERY` too (Celery's own defaults table types those).
CELERY_SETTINGS: tuple[Setting, ...] = (
    _celery("broker_url", str, "redis://127.0.0.1:6379/0",
            "the broker; each queue is a Redis list of its name in this database"),
    _celery("result_backend", str, "redis://127.0.0.1:6379/1",
            "where job states and results are kept", optional=True),
    _celery("task_default_queue", str, "default", "the queue of a task with no route"),
    _celery("task_routes", dict, celery_routes(), "task name -> queue, from `service/routing.py`"),
    _celery("task_queues", tuple, tuple(Queue(name, routing_key=name) for name in QUEUES),
            "every routed queue, declared up front"),
    _celery("task_create_missing_queues", bool, False,
            "off: a worker asked for a queue nothing routes to refuses to start"),
    # Crash safety: a message is acknowledged only after the task finished, and a task whose
    # worker process died is requeued instead of being marked failed.
    _celery("task_acks_late", bool, True,
            "acknowledge a message when its task has finished, not when it arrives"),
    _celery("task_reject_on_worker_lost", bool, True,
            "requeue the task of a worker process that died, instead of failing it"),
    _celery("worker_prefetch_multiplier", int, 1, "messages a worker process reserves ahead"),
    _celery("task_time_limit", float, budget.TASK_TIME_LIMIT,
            "hard time limit, seconds; set per worker group (a worker's `--time-limit` flag "
            "would lose to it, since every task copies it)"),
    _celery("task_soft_time_limit", float, budget.soft_time_limit(budget.TASK_TIME_LIMIT),
            "soft time limit, seconds: the task gets an exception it may clean up after"),
    _celery("task_track_started", bool, True, "report `started` when a worker begins a task"),
    _celery("task_ignore_result", bool, True,
            "store results only for tasks that ask for it (`store_result`)"),
    _celery("result_expires", float, 24 * 3600, "seconds a stored result is kept"),
    _celery("result_extended", bool, True, "store the task's name and arguments with its result"),
    _celery("task_serializer", str, "json", "messages are JSON: ids and plain values only"),
    _celery("result_serializer", str, "json", "results are JSON"),
    _celery("accept_content", list, ["json"], "workers accept JSON messages only"),
    _celery("timezone", str, "UTC", "the schedule's time zone"),
    _celery("enable_utc", bool, True, "times are UTC"),
    _celery("broker_connection_retry_on_startup", bool, True,
            "a worker started before Redis waits for it"),
    _celery("broker_connection_max_retries", int, None,
            "attempts to reconnect to a lost broker; unset: a worker keeps trying until the "
            "broker is back (Celery's default gives up after 100, some 45 minutes)",
            optional=True),
    _celery("broker_transport_options", dict, {
        # Messages a dead worker held come back after visibility_timeout; workers sweep for
        # them every interval * throttle seconds (kombu: 100 s), and a worker killed during a
        # sweep holds its mutex until it expires (kombu: 300 s).
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 3,
        "unacked_mutex_expire": 60,
        # An enqueue answers within connect + 2 x socket timeout (probe, publish) at worst.
        "socket_connect_timeout": 1,
        "socket_timeout": 1,
    }, "Redis transport options; `visibility_timeout` (seconds before Redis redelivers an "
       "unacknowledged task) is derived: the longest hard limit + 300, at least 3600"),
    _celery("result_backend_transport_options", dict, {
        "socket_connect_timeout": 1,
        "socket_timeout": 2,
        # Publishing subscribes to the result channel first; bound that wait like the publish.
        "retry_policy": _SHORT_RETRY,
    }, "result store connection: bounded waits, so a publish fails fast when Redis is down"),
    # Publishing gives up quickly so that the API can answer 503 while the broker is down.
    _celery("task_publish_retry_policy", dict, {**_SHORT_RETRY, "interval_max": 1},
            "a publish gives up after two quick retries, so the API answers 503 at once"),
    _celery("worker_send_task_events", bool, False,
            "task events (Flower's task views): about two Redis PUBLISHes per task from the "
            "worker's main process, a third of its time on no-op tasks; a running Flower turns "
            "them on in every worker it reaches (`enable_events`)"),
    _celery("task_send_sent_event", bool, False,
            "a task-sent event per publish (one more Redis PUBLISH per enqueue), for Flower's "
            "`SENT` state; off: Flower lists a task once a worker receives it, and the job's row "
            "and `celery_task_sent_total` count what was sent"),
    _celery("worker_soft_shutdown_timeout", float, 0.0,
            "Celery soft shutdown: seconds running tasks get once a cold shutdown starts; 0: off"),
    _celery("beat_scheduler", str, "service.beat:TickRecordingScheduler",
            "beat keeps its schedule and a leader lock in Redis (celery-redbeat), and the time of "
            "its last tick for the exporter"),
    _celery("beat_max_loop_interval", int, 5, "seconds between beat's checks of the schedule"),
    _celery("redbeat_key_prefix", str, "flask_celery:redbeat", "Redis keys of beat's schedule"),
    _celery("redbeat_lock_timeout", int, 25,
            "seconds a dead beat's leader lock is held before another beat takes over"),
    _celery("redbeat_redis_url", str, None,
            "Redis of beat's schedule and lock; unset: the broker's", optional=True),
    _celery("redbeat_redis_options", dict, {"socket_connect_timeout": 3, "socket_timeout": 10},
            "beat's Redis connection: bounded waits"),
    _celery("beat_schedule", dict, {
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
    }, "nightly trial expiry at 02:00, trial reminders at five past every hour"),
)  # fmt: skip

#: The app's settings.
SETTINGS: tuple[Setting, ...] = (
    Setting("SECRET_KEY", str, "dev-only-change-me", "Flask's secret key; set your own"),
    Setting("API_KEYS", list, [],
            "API keys accepted besides the database's (`flask api-keys create`): a JSON list of "
            "`{\"name\", \"scopes\", \"sha256\"}`; `flask api-keys digest NAME` makes one"),
    Setting("AUTH_DISABLED", bool, False,
            "development only: serve every request without a key, with every scope (logs a "
            "warning at start)"),
    Setting("AUTH_JWT_ISSUER", str, None,
            "accept JWTs from this identity provider (`iss`); with the audience and JWKS URL",
            optional=True),
    Setting("AUTH_JWT_AUDIENCE", str, None, "the `aud` its tokens must carry", optional=True),
    Setting("AUTH_JWT_JWKS_URL", str, None,
            "https URL of the provider's signing keys (JWKS)", optional=True),
    Setting("AUTH_JWT_SCOPES_CLAIM", str, "scope",
            "the claim holding a token's scopes: a space-separated string or a list"),
    Setting("AUTH_JWT_CA_FILE", str, None,
            "CA bundle that verifies the JWKS URL's certificate; unset: the system's",
            optional=True),
    Setting("REDIS_USERNAME", str, None,
            "Redis 6 ACL user of every Redis connection whose URL names none", optional=True),
    Setting("REDIS_PASSWORD", str, None,
            "password of every Redis connection whose URL carries none (written into the URLs "
            "percent-encoded); a URL with other credentials is refused", optional=True),
    Setting("REDIS_CA_FILE", str, None,
            "CA bundle that verifies the certificate of every `rediss://` connection; unset: "
            "the system's. The server's certificate and name are always verified",
            optional=True),
    Setting("REDIS_REQUIRE_TLS", bool, False,
            "refuse a plain `redis://` URL: every Redis connection must be `rediss://`"),
    Setting("KEDA_DATABASE_INDEX", int, None,
            "the Redis database KEDA counts this worker's queues in (the chart sets it); a "
            "worker whose broker URL selects another refuses to start", optional=True),
    Setting("SQLALCHEMY_DATABASE_URI", str, None,
            "the database, e.g. `postgresql+psycopg://user:pass@host/db`; unset: a SQLite file "
            "next to the storage folder", optional=True),
    Setting("SQLALCHEMY_ENGINE_OPTIONS", dict, {}, "SQLAlchemy engine options"),
    Setting("STORAGE_DIR", str, None,
            "where invoice PDFs and exports are written; unset: `instance/storage`",
            optional=True),
    Setting("MAX_CONTENT_LENGTH", int, 64 * 1024, "largest request body the API accepts, bytes"),
    Setting("SMTP_HOST", str, "127.0.0.1", "the SMTP server"),
    Setting("SMTP_PORT", int, 8025, "its port"),
    Setting("SMTP_USERNAME", str, None, "log in with this user, when set", optional=True),
    Setting("SMTP_PASSWORD", str, None, "and this password", optional=True),
    Setting("SMTP_TLS", str, None,
            "`starttls` (upgrade a plain connection, port 587), `ssl` (TLS from the start, port "
            "465) or `none`; the certificate is verified. Unset: `SMTP_STARTTLS` decides",
            optional=True, choices=("none", "starttls", "ssl")),
    Setting("SMTP_STARTTLS", bool, False, "older spelling of `SMTP_TLS=starttls`"),
    Setting("SMTP_CA_FILE", str, None,
            "CA bundle that verifies the SMTP server's certificate; unset: the system's",
            optional=True),
    Setting("SMTP_TIMEOUT", float, 10, "seconds an SMTP exchange may take"),
    Setting("MAIL_FROM", str, "Flask Celery <noreply@example.com>", "sender of every mail"),
    Setting("WEBHOOK_TIMEOUT", float, 10, "seconds a webhook delivery may take"),
    Setting("WEBHOOK_MAX_RESPONSE_BYTES", int, 64 * 1024,
            "bytes of a receiver's answer that are read, the rest is dropped"),
    Setting("WEBHOOK_ALLOWED_NETWORKS", list, [],
            "networks webhooks may reach although internal, each `CIDR` or `CIDR:port` "
            "(`[IPv6 CIDR]:port`), e.g. `[\"10.0.0.0/8\", \"127.0.0.1:8090\"]`"),
    Setting("WEBHOOK_CA_FILE", str, None,
            "CA bundle that verifies HTTPS receivers' certificates; unset: the system's",
            optional=True),
    Setting("WEBHOOK_USER_AGENT", str, "flask-celery-webhooks/0.1", "User-Agent of deliveries"),
    Setting("TRIAL_REMINDER_HOURS", int, 24, "remind trial users this many hours before the end"),
    Setting("RETRY_MAX_RETRIES", int, 6, "retries of a transient failure, then a dead letter"),
    Setting("RETRY_BACKOFF_BASE", float, 2.0, "seconds before the first retry, doubled each time"),
    Setting("RETRY_BACKOFF_MAX", float, 300.0, "longest delay between retries, seconds"),
    Setting("EXPORT_BATCH_SIZE", int, 200, "rows an export reads per query"),
    Setting("OUTBOX_RELAY_AFTER", float, 10.0,
            "seconds after which beat publishes a job recorded but not known to be published "
            "(web died, or its publish timed out); longer than an enqueue may take"),
    Setting("OUTBOX_RESCUE_AFTER", float, 300.0,
            "seconds after which beat looks for a job still `queued` (never started) whose "
            "message Redis no longer holds (a worker killed between taking it and recording it) "
            "and publishes it again"),
    Setting("WORKER_HEARTBEAT_FILE", str, DEFAULT_HEARTBEAT_FILE,
            "the worker's liveness file (`python -m service.worker.probes worker`)"),
    Setting("LOG_FORMAT", str, "text",
            "`json` for one JSON object per line, with `request_id` and `task_id`"),
    Setting("LOG_LEVEL", str, "INFO", "the root logger's level"),
    Setting("METRICS_ENABLED", bool, True,
            "count requests and tasks for Prometheus; web answers `/metrics`"),
    Setting("METRICS_HOSTNAME_LABEL", str, None,
            "the value of every metric's `hostname` label; unset: the host's name (a series per "
            "pod: set a constant to bound cardinality under autoscaling)", optional=True),
    Setting("WORKER_METRICS_PORT", int, 9808,
            "port a worker's main process serves `/metrics` on, for all its pool processes; "
            "0: off"),
    Setting("EXPORTER_PORT", int, 9808,
            "port the broker exporter (`python -m service.exporter`) serves `/metrics` on"),
    Setting("METRICS_ADDRESS", str, "0.0.0.0",
            "address the worker's and the exporter's metrics ports bind"),
    Setting("CELERY", dict, {s.name: s.default for s in CELERY_SETTINGS},
            "Celery's settings, the table below"),
)  # fmt: skip

DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS}


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the environment sets through each row's own variable, typed."""
    out: dict[str, Any] = {}
    for row in SETTINGS + CELERY_SETTINGS:
        for var in row.env_names():
            if var not in environ or row.name == "CELERY":
                continue
            value = row.parse(environ[var])
            if row.parent:
                # the key from_prefixed_env gives it, so both spellings keep their precedence
                key = var.removeprefix(f"{ENV_PREFIX}{row.parent}__")
                out.setdefault(row.parent, {})[key] = value
            else:
                out[row.name] = value
    return out


def check(config: Mapping[str, Any]) -> None:
    """Refuse a setting of the wrong type, naming its environment variable."""
    for row in SETTINGS:
        row.check(config.get(row.name))
    celery_rows = {row.name: row for row in CELERY_SETTINGS}
    for key, value in config["CELERY"].items():
        if key.lower() in celery_rows:
            celery_rows[key.lower()].check(value)


def derive(config: Mapping[str, Any], instance_path: str) -> dict[str, Any]:
    """The values that follow from others: storage and database paths, Celery's settings."""
    storage = Path(config["STORAGE_DIR"] or Path(instance_path) / "storage")
    database = (
        config["SQLALCHEMY_DATABASE_URI"] or f"sqlite:///{storage.parent / 'flask_celery.db'}"
    )
    return {
        "STORAGE_DIR": str(storage),
        "SQLALCHEMY_DATABASE_URI": database,
        "CELERY": RedisAccess.from_config(config).secure(celery_settings(config["CELERY"])),
    }


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
    """Fold the `CELERY` mapping to the lower-case names Celery reads, derive, and check it.

    `FLASK_CELERY__BROKER_URL` arrives as ``BROKER_URL``; Celery would read that as an old-style
    setting and ignore it next to ``broker_url``, so upper-case keys win over (and merge into)
    their lower-case defaults.
    """
    lower = {k: v for k, v in raw.items() if k == k.lower()}
    upper = {k.lower(): v for k, v in raw.items() if k != k.lower()}
    settings = merge(lower, upper)
    transport = settings.setdefault("broker_transport_options", {})
    transport.setdefault("visibility_timeout", budget.visibility_timeout(settings))
    # beat's schedule and leader lock live on the broker's Redis unless configured otherwise
    if settings.get("redbeat_redis_url") is None:
        settings["redbeat_redis_url"] = settings.get("broker_url")
    budget.check(settings)
    return settings
