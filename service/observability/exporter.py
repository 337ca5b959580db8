"""The broker exporter's collector: broker-level gauges, read from Redis and the database at
scrape time.

Queue lengths, in-flight counts, live workers, dead letters and beat's last tick are the same
whichever process reads them, so exactly one process exports them (`python -m service.exporter`,
one replica) and a sum over replicas stays true. Every value is read when Prometheus scrapes,
so nothing is cached or goes stale between scrapes: queues are Redis lists named as the queue
(contract 1), in-flight sets are `service.worker.inflight`'s, live workers are the keys of
`service.worker.registry`, beat's tick is `service.beat`'s key, dead letters are rows. When
Redis or the database does not answer, the families read from it are left out of that scrape,
`flask_celery_exporter_dependency_up` says 0 for it, and the next scrape tries again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import redis
import sqlalchemy as sa
from flask import Flask
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.exc import SQLAlchemyError

from .. import redis_options
from ..beat import LAST_TICK_KEY
from ..config import ConfigError
from ..data.db import db
from ..data.models import DeadLetter
from ..routing import QUEUES
from ..worker.inflight import inflight_key
from ..worker.registry import LiveWorker, live_workers
from .metrics import PUBLISHED_AT_HEADER

#: Seconds a scrape waits for Redis: far inside Prometheus's default 10 s scrape timeout, so a
#: Redis that is away shows as `dependency_up` 0 rather than as a failed scrape.
REDIS_TIMEOUT = 2.0

log = logging.getLogger(__name__)


def published_at(message: bytes | str) -> float | None:
    """The publish time (epoch seconds) in a waiting message's headers; None when it has none."""
    try:
        value = json.loads(message)["headers"][PUBLISHED_AT_HEADER]
        return float(value)
    except (ValueError, TypeError, KeyError):
        return None


def oldest_age(message: bytes | str | None, now: float) -> float | None:
    """Seconds the oldest waiting message has waited: 0 for an empty queue, None when unknown."""
    if message is None:
        return 0.0
    published = published_at(message)
    return None if published is None else max(0.0, now - published)


def count_workers(workers: Iterable[LiveWorker]) -> tuple[dict[str, int], dict[str, int]]:
    """Per routed queue: the workers consuming it, and their pool processes."""
    counts = dict.fromkeys(QUEUES, 0)
    processes = dict.fromkeys(QUEUES, 0)
    for worker in workers:
        for queue in set(worker.queues) & set(QUEUES):
            counts[queue] += 1
            processes[queue] += worker.concurrency
    return counts, processes


def _redis_client(url: str, tls: Mapping[str, Any] | None) -> redis.Redis:
    # one retry on a fresh connection (a pooled one may predate a Redis restart), no backoff
    return redis_options.client(
        url,
        tls,
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
    )


def _per_queue(name: str, documentation: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["queue_name"])
    for queue, value in values.items():
        family.add_metric([queue], value)
    return family


class BrokerCollector(Collector):
    """Collects the broker-level gauges of `app`'s broker, beat Redis and database."""

    def __init__(self, app: Flask) -> None:
        celery = app.config["CELERY"]
        if not str(celery["broker_url"]).startswith(("redis://", "rediss://")):
            raise ConfigError(
                "FLASK_CELERY__BROKER_URL: the broker exporter reads Redis lists, so it needs a "
                "redis:// or rediss:// broker"
            )
        self.app = app
        self.broker = _redis_client(celery["broker_url"], celery.get("broker_use_ssl"))
        beat_url = celery.get("redbeat_redis_url") or celery["broker_url"]
        self.beat = (
            self.broker
            if beat_url == celery["broker_url"]
            else _redis_client(beat_url, celery.get("redbeat_redis_use_ssl"))
        )
        self._up: dict[str, bool] = {}

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily(
            "flask_celery_exporter_dependency_up",
            "1 when the dependency answered this scrape, 0 when its families are left out.",
            labels=["dependency"],
        )
        readers: dict[str, Callable[[], list[Metric]]] = {
            "redis": self.redis_families,
            "database": self.database_families,
        }
        for dependency, read in readers.items():
            try:
                families = read()
            except (redis.RedisError, SQLAlchemyError) as exc:
                self._note(dependency, exc)
                up.add_metric([dependency], 0)
                continue
            self._note(dependency, None)
            up.add_metric([dependency], 1)
            yield from families
        yield up
        yield GaugeMetricFamily(
            "flask_celery_exporter_scrape_duration_seconds",
            "Seconds this scrape took to read Redis and the database.",
            value=time.perf_counter() - started,
        )

    def _note(self, dependency: str, error: BaseException | None) -> None:
        """Log when a dependency goes away or comes back, not at every scrape."""
        was_up = self._up.get(dependency, True)
        self._up[dependency] = error is None
        if error is not None and was_up:
            log.warning("%s does not answer, its metrics are left out: %s", dependency, error)
        elif error is None and not was_up:
            log.info("%s answers again", dependency)

    def redis_families(self) -> list[Metric]:
        """Queue lengths, oldest ages, in-flight counts, live workers and beat's last tick."""
        now = time.time()
        pipe = self.broker.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(queue)
            # publishers LPUSH and consumers BRPOP: the oldest message is the last one
            pipe.lindex(queue, -1)
            pipe.zcount(inflight_key(queue), f"({now}", "+inf")
        replies = pipe.execute()
        workers = live_workers(self.broker)
        last_tick = self.beat.get(LAST_TICK_KEY)

        lengths: dict[str, float] = {}
        ages: dict[str, float] = {}
        inflight: dict[str, float] = {}
        for n, queue in enumerate(QUEUES):
            lengths[queue], oldest, inflight[queue] = replies[3 * n : 3 * n + 3]
            age = oldest_age(oldest, now)
            if age is not None:  # a message without the header: its age is unknown
                ages[queue] = age
        return [
            _per_queue("celery_queue_length", "Messages waiting in the queue.", lengths),
            _per_queue(
                "flask_celery_queue_oldest_message_age_seconds",
                "Seconds the oldest waiting message has waited since its publish; 0 when empty.",
                ages,
            ),
            _per_queue(
                "flask_celery_queue_inflight",
                "Tasks taken from the queue that are running or reserved, within their deadline.",
                inflight,
            ),
            *self._worker_families(workers),
            self._beat_family(last_tick),
        ]

    @staticmethod
    def _worker_families(workers: Iterable[LiveWorker]) -> list[Metric]:
        counts, processes = count_workers(workers)
        return [
            _per_queue("celery_active_worker_count", "Workers consuming the queue.", counts),
            _per_queue(
                "celery_active_process_count",
                "Pool processes of the workers consuming the queue.",
                processes,
            ),
        ]

    @staticmethod
    def _beat_family(last_tick: Any) -> Metric:
        family = GaugeMetricFamily(
            "flask_celery_beat_last_tick_timestamp_seconds",
            "When the leading beat last ran its scheduler loop (epoch seconds); no sample "
            "before its first tick.",
            labels=[],
        )
        try:
            family.add_metric([], float(last_tick))
        except (TypeError, ValueError):
            pass  # never ticked
        return family

    def database_families(self) -> list[Metric]:
        """Dead letters not yet re-driven, per task and queue."""
        query = (
            sa.select(DeadLetter.task_name, DeadLetter.queue, sa.func.count())
            .where(DeadLetter.redriven_at.is_(None))
            .group_by(DeadLetter.task_name, DeadLetter.queue)
        )
        with self.app.app_context():
            rows = db.session.execute(query).all()
        family = GaugeMetricFamily(
            "flask_celery_dead_letters",
            "Tasks that failed for good and have not been re-driven.",
            labels=["name", "queue_name"],
        )
        for name, queue, count in rows:
            family.add_metric([name, queue or ""], count)
        return [family]
