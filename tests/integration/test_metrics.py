"""Metrics scraped from real processes add up to exactly what happened.

A prefork worker that recycles its children every five tasks and a gunicorn with three workers
are the hard cases for prometheus_client's multiprocess mode: every process writes its own
files, and a scrape of the worker's main process (or of any gunicorn worker) must sum them all,
dead processes included.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from harness.auth import bearer
from harness.processes import free_port, stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import (
    BIN,
    INCLUDE_TEST_TASKS,
    celery_client,
    stack_environment,
    start_web,
    start_worker,
)

#: Samples by metric name, each a (labels, value) pair.
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    """Every sample `url` serves, by sample name."""
    out: Samples = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def total(samples: Samples, metric: str, /, **labels: str) -> float:
    """The sum of `metric` over the samples whose labels include `labels`."""
    return sum(
        value
        for sample_labels, value in samples.get(metric, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


@dataclass
class Stack:
    env: dict[str, str]
    state: Path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A redis-server of its own and a migrated SQLite database; metrics in per-role folders."""
    redis = RedisServer(tmp_path / "redis").start()
    env = stack_environment(
        tmp_path,
        redis.url(0),
        redis.url(1),
        {
            "FLASK_METRICS_ADDRESS": "127.0.0.1",
            # retries come quickly, so the test sees them through
            "FLASK_RETRY_BACKOFF_BASE": "0.01",
            "FLASK_RETRY_BACKOFF_MAX": "0.05",
        },
    )
    subprocess.run(
        [BIN / "flask", "--app", "service.wsgi", "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )
    yield Stack(env, tmp_path)
    redis.stop()


def test_worker_counters_sum_to_exactly_what_ran_across_recycled_children(stack: Stack) -> None:
    port = free_port()
    env = {
        **stack.env,
        "PROMETHEUS_MULTIPROC_DIR": str(stack.state / "prometheus-worker"),
        "FLASK_WORKER_METRICS_PORT": str(port),
    }
    recycling = ("--max-tasks-per-child", "5")
    proc, _ = start_worker(
        env,
        ("default",),
        stack.state / "worker.log",
        concurrency=4,
        extra=(*INCLUDE_TEST_TASKS, *recycling),
    )
    try:
        celery = celery_client(env)
        plan = ["jobs.add"] * 140 + ["tests.fail"] * 30 + ["tests.flaky"] * 30
        for i, name in enumerate(plan):
            args = (i, 1) if name == "jobs.add" else (i,)
            celery.send_task(name, args, queue="default")
        url = f"http://127.0.0.1:{port}/metrics"

        def all_finished() -> Samples | None:
            samples = scrape(url)
            done = total(samples, "celery_task_succeeded_total") + total(
                samples, "celery_task_failed_total"
            )
            return samples if done >= len(plan) else None

        samples = wait_until(all_finished, timeout=120, what="200 tasks finished", interval=0.5)
        samples = scrape(url)  # once more: nothing counted twice after the last task
        left = sorted(path.name for path in (stack.state / "prometheus-worker").glob("counter_*"))
    finally:
        stop(proc, timeout=30)

    assert total(samples, "celery_task_succeeded_total", name="jobs.add") == 140
    assert total(samples, "celery_task_succeeded_total", name="tests.flaky") == 30
    assert total(samples, "celery_task_succeeded_total") == 170
    assert total(samples, "celery_task_failed_total", name="tests.fail") == 30
    assert total(samples, "celery_task_failed_total", exception="PermanentError") == 30
    assert total(samples, "celery_task_retried_total", name="tests.flaky") == 30
    assert total(samples, "celery_task_retried_total") == 30
    # every retry is a new message: 200 first deliveries and 30 retries
    assert total(samples, "celery_task_received_total") == 230
    assert total(samples, "celery_task_started_total") == 230
    assert total(samples, "celery_task_queue_wait_time_count") == 230
    assert total(samples, "celery_task_runtime_count") == 170
    assert total(samples, "celery_task_received_total", queue_name="default") == 230
    assert total(samples, "celery_worker_tasks_active") == 0
    assert total(samples, "celery_worker_up") == 1
    # 40 pool processes ran (5 tasks each): the scrape folded the files of the ended ones into
    # one archive, and the sums above are still exact
    # (a pool process may have been replaced after the last scrape: room for two)
    assert "counter_archive.db" in left
    assert len(left) <= 1 + 1 + 4 + 2, f"files of ended processes piled up: {left}"


def test_the_hostname_label_can_be_one_constant(stack: Stack) -> None:
    port = free_port()
    env = {
        **stack.env,
        "PROMETHEUS_MULTIPROC_DIR": str(stack.state / "prometheus-worker"),
        "FLASK_WORKER_METRICS_PORT": str(port),
        "FLASK_METRICS_HOSTNAME_LABEL": "workers",
    }
    proc, _ = start_worker(env, ("default",), stack.state / "worker.log", concurrency=1)
    try:
        celery_client(env).send_task("jobs.add", (1, 2), queue="default")
        url = f"http://127.0.0.1:{port}/metrics"

        def succeeded() -> Samples | None:
            samples = scrape(url)
            return samples if total(samples, "celery_task_succeeded_total") else None

        samples = wait_until(succeeded, timeout=30, what="the task succeeded")
    finally:
        stop(proc, timeout=30)
    hostnames = {
        labels["hostname"]
        for name in ("celery_task_succeeded_total", "celery_task_received_total",
                     "celery_worker_up")
        for labels, _ in samples[name]
    }  # fmt: skip
    assert hostnames == {"workers"}


@pytest.fixture
def gunicorn(stack: Stack) -> Iterator[str]:
    """gunicorn with three workers and the metrics hooks; yields its base URL."""
    env = {**stack.env, "PROMETHEUS_MULTIPROC_DIR": str(stack.state / "prometheus-web")}
    proc, url = start_web(env, stack.state / "gunicorn.log", workers=3, ready="/healthz")
    yield url
    stop(proc)


def test_web_counters_sum_over_every_gunicorn_worker(gunicorn: str) -> None:
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=gunicorn, timeout=10, headers=bearer()) as client:
        for i in range(30):
            statuses[client.post("/jobs/add", json={"a": i, "b": 1}).status_code] += 1
        for _ in range(10):
            keyed = {"Idempotency-Key": "k"}
            statuses[
                client.post("/jobs/add", json={"a": 1, "b": 1}, headers=keyed).status_code
            ] += 1
        for _ in range(7):
            statuses[client.post("/jobs/add", json={"a": "x"}).status_code] += 1
        scrapes = [scrape(f"{gunicorn}/metrics") for _ in range(6)]  # several workers answer
    assert statuses == {202: 40, 400: 7}
    for samples in scrapes:
        labels: dict[str, Any] = {"endpoint": "/jobs/add", "method": "POST"}
        assert total(samples, "flask_celery_http_requests_total", **labels, status="202") == 40
        assert total(samples, "flask_celery_http_requests_total", **labels, status="400") == 7
        assert total(samples, "flask_celery_http_request_duration_seconds_count", **labels) == 47
        assert total(samples, "flask_celery_enqueue_total", outcome="accepted") == 31
        assert total(samples, "flask_celery_enqueue_total", outcome="replayed") == 9
        assert total(samples, "flask_celery_enqueue_total", outcome="refused") == 7
        # published messages only: a replay and a refused body publish nothing
        assert total(samples, "celery_task_sent_total", name="jobs.add", queue_name="default") == 31


def test_a_broker_outage_is_counted_as_503s_and_publishes_nothing(
    stack: Stack, gunicorn: str
) -> None:
    redis.Redis.from_url(stack.env["FLASK_CELERY__BROKER_URL"]).shutdown(nosave=True)
    with httpx.Client(base_url=gunicorn, timeout=30, headers=bearer()) as client:
        codes = [client.post("/jobs/add", json={"a": 1, "b": 2}).status_code for _ in range(3)]
        samples = scrape(f"{gunicorn}/metrics")
    assert codes == [503, 503, 503]
    assert total(samples, "flask_celery_enqueue_total", outcome="broker_unavailable") == 3
    assert total(samples, "celery_task_sent_total") == 0
