"""The scaling contract, measured: what KEDA would compute from the rendered ScaledObjects.

Jobs are enqueued through the locally run web pod with no worker running; each ScaledObject's
metric and desired replicas are then computed as KEDA does (see harness/keda.py). With a
slow worker of one group running, its metric is sampled while tasks run: work a worker has taken
leaves the queue's list, and only the in-flight set keeps the group from looking idle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
import redis
from celery.result import AsyncResult

from harness import keda
from harness.auth import bearer
from harness.redis_server import RedisServer
from harness.stack import INCLUDE_TEST_TASKS
from tests.support.chart import NAME, one, process_helm, render
from tests.support.chart_processes import LocalCluster, LocalContainer

GROUPS = ("general", "reports", "webhooks")
SCALE_TO_ZERO_MAX_2 = {"workers": {"defaults": {"minReplicas": 0, "maxReplicas": 2}}}
#: Test-only worker arguments: the `tests.sleep` task, and two pool processes.
SLOW_WORKER = (*INCLUDE_TEST_TASKS, "--concurrency", "2")
#: Task lengths, staggered so that no two running tasks end together while work still waits.
DURATIONS = (3, 3.5, 3, 3.5)


@pytest.fixture
def connect(redis_server: RedisServer) -> Callable[[int], redis.Redis]:
    """Opens the local Redis in a given database, as a trigger's address and databaseIndex would."""
    return lambda db: redis.Redis(port=redis_server.port, db=db, socket_timeout=5)


@pytest.fixture
def idle_broker(
    local_web: LocalContainer, celery_client: Any, connect: Callable[[int], redis.Redis]
) -> redis.Redis:
    """Starts nothing: empties the broker database and checks that no worker is consuming."""
    assert not celery_client.control.ping(timeout=0.5), "a worker is still running"
    broker = connect(int(local_web.env["FLASK_CELERY__BROKER_URL"].rsplit("/", 1)[1]))
    broker.flushdb()
    return broker


@pytest.fixture
def api(local_web: LocalContainer) -> Iterator[httpx.Client]:
    """An HTTP client for the session's web pod, sending the test API key."""
    base_url = f"http://127.0.0.1:{local_web.ports[8000]}"
    with httpx.Client(base_url=base_url, headers=bearer(), timeout=10) as client:
        yield client


def enqueue(api: httpx.Client, path: str, body: dict[str, Any], times: int) -> None:
    for _ in range(times):
        answer = api.post(path, json=body)
        assert answer.status_code == 202, answer.text


def scaled_objects(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    docs = render(process_helm(), values, show_only=["templates/worker/scaledobject.yaml"])
    return {group: one(docs, "ScaledObject", NAME.format(f"worker-{group}")) for group in GROUPS}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, {"general": 3, "reports": 2, "webhooks": 1}),
        (SCALE_TO_ZERO_MAX_2, {"general": 2, "reports": 2, "webhooks": 0}),
    ],
    ids=["defaults", "scale-to-zero-max-2"],
)
def test_desired_replicas_follow_the_jobs_enqueued_through_the_api(
    values, expected, idle_broker, api, connect
):
    user = api.post("/users", json={"email": f"{uuid4().hex}@example.com", "name": "N"})
    assert user.status_code == 201, user.text
    enqueue(api, "/jobs/add", {"a": 1, "b": 2}, 8)  # general: default
    enqueue(api, "/jobs/welcome-email", {"user_id": user.json()["id"]}, 1)  # general: email
    enqueue(api, "/jobs/export", {"table": "users"}, 5)  # reports: exports
    metrics = {g: keda.metric(so, connect) for g, so in scaled_objects(values).items()}
    assert metrics == {"general": 9, "reports": 5, "webhooks": 0}
    desired = {g: keda.desired_replicas(so, metrics[g]) for g, so in scaled_objects(values).items()}
    assert desired == expected


def test_a_published_job_leaves_its_time_limit_to_the_consuming_group(idle_broker, api):
    enqueue(api, "/jobs/add", {"a": 1, "b": 2}, 1)
    (message,) = idle_broker.lrange("default", 0, -1)
    assert json.loads(message)["headers"]["timelimit"] == [None, None]


def test_group_metric_counts_running_tasks_until_they_end(
    idle_broker, local_cluster: LocalCluster, celery_client, connect
):
    deployment = NAME.format("worker-webhooks")
    so = one(local_cluster.docs, "ScaledObject", deployment)
    worker = local_cluster.start_pods([deployment], extra={deployment: SLOW_WORKER})[deployment]
    try:
        ids = [
            celery_client.send_task("tests.sleep", args=[d], queue="webhooks").id for d in DURATIONS
        ]
        samples = sample(so, ids, celery_client, connect, worker)
    finally:
        worker.stop()
    running = [s["running"] for s in samples]
    assert max(running) == 2, "the two pool processes never ran together"
    short = [s for s in samples if s["metric"] < s["running"]]
    assert not short, f"the metric missed running tasks: {short[:5]}"
    assert [s for s in samples if s["waiting"] == 0 and s["running"]], (
        "the queue's list never emptied while tasks ran"
    )
    assert samples[-1]["metric"] == 0
    assert keda.desired_replicas(so, 0) == so["spec"]["minReplicaCount"] == 1


def sample(
    so: dict[str, Any],
    ids: list[str],
    celery_client: Any,
    connect: Callable[[int], redis.Redis],
    worker: LocalContainer,
) -> list[dict[str, Any]]:
    """Sample the group's metric until every task succeeded and the metric is back to zero.

    A task counts as running in a sample when it is STARTED both before and after the metric is
    read: its in-flight entry is written before it starts and removed after its result is
    stored, so such a task must be in the metric.
    """

    def states() -> dict[str, str]:
        return {i: AsyncResult(i, app=celery_client).state for i in ids}

    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert worker.alive(), worker.log_tail()
        before = states()
        value = keda.metric(so, connect)
        waiting = connect(0).llen("webhooks")
        after = states()
        running = sum(before[i] == after[i] == "STARTED" for i in ids)
        samples.append({"metric": value, "waiting": waiting, "running": running})
        if value == 0 and set(after.values()) == {"SUCCESS"}:
            return samples
        time.sleep(0.02)
    raise AssertionError(f"tasks not done within 60 s: {states()}, last {samples[-3:]}")
