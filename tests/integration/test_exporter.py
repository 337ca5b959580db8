"""The broker exporter: the real `python -m service.exporter`, scraped over HTTP.

One redis-server and one migrated SQLite database (`harness.faults.Stack`) serve the
whole module, with one exporter on them; each test starts from an empty broker database and
starts the workers or beat it needs itself, so what the exporter reports belongs to that test.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.faults import Stack
from harness.processes import free_port, stop, wait_until
from harness.stack import BIN
from service.data.db import db, utcnow
from service.data.models import DeadLetter
from service.routing import QUEUES
from service.worker.inflight import inflight_key

#: One scrape: metric name -> sorted label pairs -> value.
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


@dataclass
class Exporter:
    """A running `python -m service.exporter` and its log."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def scrape(self) -> Samples:
        """One scrape of `/metrics`."""
        response = httpx.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        out: Samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                out.setdefault(sample.name, {})[labels] = sample.value
        return out

    def per_queue(self, name: str) -> dict[str, float]:
        """One scrape's samples of a `queue_name` family: queue -> value."""
        return by_queue(self.scrape(), name)


def by_queue(samples: Samples, name: str) -> dict[str, float]:
    """The samples of a `queue_name` family: queue -> value."""
    return {dict(labels)["queue_name"]: v for labels, v in samples.get(name, {}).items()}


def start_exporter(stack: Stack, name: str) -> Exporter:
    """The exporter on a free port, answering `/metrics` when this returns; log `<name>.log`."""
    port = free_port()
    env = {"FLASK_EXPORTER_PORT": str(port), "FLASK_METRICS_ADDRESS": "127.0.0.1"}
    proc = stack.spawn(name, [sys.executable, "-m", "service.exporter"], env)
    exporter = Exporter(proc, f"http://127.0.0.1:{port}", stack.directory / f"{name}.log")
    wait_until(
        lambda: proc.poll() is None and exporter.scrape(),
        timeout=30,
        what=f"exporter /metrics (log: {exporter.log})",
    )
    return exporter


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A redis-server and a migrated SQLite database for this module's processes."""
    # workers serve no metrics port of their own here: a fixed port would clash between tests
    s = Stack.start(tmp_path_factory.mktemp("exporter"), env={"FLASK_WORKER_METRICS_PORT": "0"})
    yield s
    s.close()


@pytest.fixture(scope="module")
def exporter(stack: Stack) -> Exporter:
    """The exporter every test of this module scrapes (stopped with the stack)."""
    return start_exporter(stack, "exporter")


@pytest.fixture
def fresh(stack: Stack, exporter: Exporter) -> Stack:
    """The module's stack with an empty broker database."""
    stack.broker().flushdb()
    return stack


def test_every_routed_queue_is_reported_at_zero_before_any_worker(
    fresh: Stack, exporter: Exporter
) -> None:
    samples = exporter.scrape()
    for name in (
        "celery_queue_length",
        "celery_active_worker_count",
        "celery_active_process_count",
        "flask_celery_queue_inflight",
        "flask_celery_queue_oldest_message_age_seconds",
    ):
        assert by_queue(samples, name) == dict.fromkeys(QUEUES, 0.0), name
    assert samples["flask_celery_exporter_dependency_up"] == {
        (("dependency", "database"),): 1.0,
        (("dependency", "redis"),): 1.0,
    }
    assert 0 < samples["flask_celery_exporter_scrape_duration_seconds"][()] < 1
    assert "flask_celery_beat_last_tick_timestamp_seconds" not in samples  # beat never ticked


def test_waiting_messages_are_counted_and_the_oldest_ages(fresh: Stack, exporter: Exporter) -> None:
    fresh.celery.send_task("jobs.add", args=(0, 0))
    first_age = wait_until(
        lambda: (
            (age := exporter.per_queue("flask_celery_queue_oldest_message_age_seconds"))["default"]
            > 1.0
            and age["default"]
        ),
        timeout=10,
        what="the first message older than a second",
    )
    for n in range(1, 5):
        fresh.celery.send_task("jobs.add", args=(n, n))

    assert exporter.per_queue("celery_queue_length") == {**dict.fromkeys(QUEUES, 0.0), "default": 5}
    # the oldest message is the first one published, not the newest
    ages = exporter.per_queue("flask_celery_queue_oldest_message_age_seconds")
    assert ages == {**dict.fromkeys(QUEUES, 0.0), "default": ages["default"]}
    assert first_age <= ages["default"] < first_age + 5
    wait_until(
        lambda: (
            exporter.per_queue("flask_celery_queue_oldest_message_age_seconds")["default"]
            >= ages["default"] + 0.5
        ),
        timeout=10,
        what="the oldest message's age growing",
    )


def test_a_worker_and_its_pool_are_counted_on_each_of_its_queues_until_it_stops(
    fresh: Stack, exporter: Exporter
) -> None:
    proc = fresh.worker("worker-counted", ("default", "email"), concurrency=3)
    try:
        counted = wait_until(
            lambda: (w := exporter.per_queue("celery_active_worker_count"))["default"] == 1 and w,
            timeout=20,
            what="the worker counted",
        )
        assert counted == {**dict.fromkeys(QUEUES, 0.0), "default": 1, "email": 1}
        processes = exporter.per_queue("celery_active_process_count")
        assert processes == {**dict.fromkeys(QUEUES, 0.0), "default": 3, "email": 3}
    finally:
        assert stop(proc) == 0
    stopped = time.monotonic()
    # well inside the key's expiry: the worker withdrew it when it stopped
    wait_until(
        lambda: (
            set(exporter.per_queue("celery_active_worker_count").values()) == {0.0}
            and set(exporter.per_queue("celery_active_process_count").values()) == {0.0}
        ),
        timeout=5,
        what="the stopped worker no longer counted",
    )
    assert time.monotonic() - stopped < 5


def test_a_running_task_is_in_flight_until_it_ends(fresh: Stack, exporter: Exporter) -> None:
    proc = fresh.worker("worker-slow-task", ("default",), concurrency=1)
    try:
        fresh.celery.send_task("tests.sleep", args=(3,), queue="default")
        wait_until(
            lambda: exporter.per_queue("flask_celery_queue_inflight")["default"] == 1,
            timeout=10,
            what="the slow task in flight",
        )
        assert exporter.per_queue("celery_queue_length")["default"] == 0
        wait_until(
            lambda: exporter.per_queue("flask_celery_queue_inflight")["default"] == 0,
            timeout=15,
            what="the slow task no longer in flight",
        )
    finally:
        stop(proc)


def test_in_flight_entries_past_their_deadline_are_not_counted(
    fresh: Stack, exporter: Exporter
) -> None:
    # no worker runs to prune them: the exporter alone must leave out the expired entry
    now = time.time()
    fresh.broker().zadd(
        inflight_key("pdf"), {"died-with-its-worker": now - 10, "running": now + 60}
    )
    assert exporter.per_queue("flask_celery_queue_inflight")["pdf"] == 1


def test_dead_letters_not_yet_redriven_are_counted_per_task_and_queue(
    fresh: Stack, exporter: Exporter
) -> None:
    def letter(task: str, queue: str | None, redriven: bool = False) -> DeadLetter:
        return DeadLetter(
            task_id="00000000-0000-0000-0000-000000000000",
            task_name=task,
            queue=queue,
            args=[],
            kwargs={},
            exception_type="ValueError",
            exception_message="boom",
            attempts=1,
            redriven_at=utcnow() if redriven else None,
        )

    with fresh.app.app_context():
        db.session.add_all(
            [
                letter("webhooks.deliver", "webhooks"),
                letter("webhooks.deliver", "webhooks"),
                letter("webhooks.deliver", "webhooks", redriven=True),
                letter("invoices.generate_pdf", "pdf"),
                letter("invoices.generate_pdf", "pdf", redriven=True),
            ]
        )
        db.session.commit()
    try:
        assert exporter.scrape()["flask_celery_dead_letters"] == {
            (("name", "invoices.generate_pdf"), ("queue_name", "pdf")): 1.0,
            (("name", "webhooks.deliver"), ("queue_name", "webhooks")): 2.0,
        }
    finally:
        with fresh.app.app_context():
            db.session.execute(db.delete(DeadLetter))
            db.session.commit()


def test_a_running_beat_records_its_ticks(fresh: Stack, exporter: Exporter) -> None:
    cmd = [str(BIN / "celery"), "-A", "service.make_celery", "beat", "--loglevel", "INFO"]
    proc = fresh.spawn("beat", cmd, env={"FLASK_CELERY__BEAT_MAX_LOOP_INTERVAL": "1"})
    log = fresh.directory / "beat.log"
    try:

        def last_tick() -> float | None:
            found = exporter.scrape().get("flask_celery_beat_last_tick_timestamp_seconds", {})
            return found.get(())

        first = wait_until(last_tick, timeout=30, what=f"a beat tick (log: {log})")
        assert abs(time.time() - first) < 3
        wait_until(lambda: (last_tick() or 0) > first, timeout=10, what="a later beat tick")
    finally:
        stop(proc)


def test_the_exporter_answers_without_redis_and_recovers_when_it_is_back(
    fresh: Stack, exporter: Exporter
) -> None:
    def redis_up() -> float:
        return exporter.scrape()["flask_celery_exporter_dependency_up"][(("dependency", "redis"),)]

    assert redis_up() == 1
    fresh.redis.stop()
    try:
        started = time.monotonic()
        samples = exporter.scrape()
        assert time.monotonic() - started < 3
        assert samples["flask_celery_exporter_dependency_up"] == {
            (("dependency", "database"),): 1.0,
            (("dependency", "redis"),): 0.0,
        }
        assert "celery_queue_length" not in samples
        assert "flask_celery_exporter_scrape_duration_seconds" in samples
        assert "redis does not answer" in exporter.log.read_text()
    finally:
        fresh.redis.start()  # the same port
    wait_until(lambda: redis_up() == 1, timeout=10, what="redis reported up again")
    assert exporter.per_queue("celery_queue_length") == dict.fromkeys(QUEUES, 0.0)


def test_sigterm_stops_the_exporter_with_exit_code_0(stack: Stack) -> None:
    own = start_exporter(stack, "exporter-sigterm")
    assert stop(own.proc, timeout=10) == 0
    assert "SIGTERM received, stopping" in own.log.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{own.url}/metrics", timeout=2)
