"""Worker signals for Kubernetes: the liveness heartbeat and the in-flight sets KEDA reads."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.processes import stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import INCLUDE_TEST_TASKS, celery_client, start_worker
from service.worker.inflight import inflight_key, prune
from service.worker.registry import live_workers


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone, so no session worker consumes its queues."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def env_for(server: RedisServer, stack_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **stack_env,
        "FLASK_CELERY__BROKER_URL": server.url(0),
        "FLASK_CELERY__RESULT_BACKEND": server.url(1),
        "FLASK_WORKER_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
    }


def probe(path: Path, max_age: float = 12) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "service.worker.probes",
            "worker",
            "--max-age",
            str(max_age),
            "--file",
            str(path),
        ],
        capture_output=True,
        text=True,
    )


def test_liveness_follows_the_broker_connection(
    own_redis: RedisServer, stack_env: dict[str, str], tmp_path: Path
) -> None:
    env = env_for(own_redis, stack_env, tmp_path)
    heartbeat = tmp_path / "heartbeat"
    assert probe(heartbeat).returncode == 1  # no worker yet
    proc, node = start_worker(env, ("default",), tmp_path / "worker.log", concurrency=1)

    def registered() -> list[str]:
        return [w.node for w in live_workers(redis.Redis.from_url(own_redis.url(0)))]

    try:
        wait_until(lambda: probe(heartbeat).returncode == 0, timeout=20, what="fresh heartbeat")
        wait_until(lambda: registered() == [node], timeout=10, what="registry key")
        own_redis.stop()  # the consumer loses its connection: the heartbeat stops
        result = wait_until(
            lambda: (r := probe(heartbeat)).returncode == 1 and r,
            timeout=30,
            what="probe failing without a broker",
        )
        assert "not consuming" in result.stderr or "stopped consuming" in result.stderr
        own_redis.start()  # same port: the worker reconnects and beats again
        wait_until(
            lambda: probe(heartbeat).returncode == 0, timeout=60, what="heartbeat after reconnect"
        )
        # the registry, written beside the heartbeat over a client of its own, follows too
        wait_until(lambda: registered() == [node], timeout=20, what="registry key after reconnect")
        assert proc.poll() is None
    finally:
        stop(proc)
    assert not heartbeat.exists()  # a stopped worker leaves no fresh heartbeat behind
    assert registered() == []  # nor a registry key


def test_inflight_set_counts_running_tasks_until_they_end(
    own_redis: RedisServer, stack_env: dict[str, str], tmp_path: Path
) -> None:
    # a worker group's time limits come from the environment: a `--time-limit` flag would lose
    # to the task_time_limit every task copies from the configuration
    env = {
        **env_for(own_redis, stack_env, tmp_path),
        "FLASK_CELERY__TASK_TIME_LIMIT": "60",
        "FLASK_CELERY__TASK_SOFT_TIME_LIMIT": "50",
    }
    client = redis.Redis.from_url(own_redis.url(0))
    celery_app = celery_client(env)
    proc, _ = start_worker(
        env,
        ("default",),
        tmp_path / "worker.log",
        concurrency=2,
        extra=INCLUDE_TEST_TASKS,
    )
    try:
        results = [
            celery_app.send_task("tests.sleep", args=(2,), queue="default") for _ in range(3)
        ]
        seen: list[tuple[int, int]] = []

        def running() -> bool:
            seen.append((int(client.llen("default")), int(client.zcard(inflight_key("default")))))
            return seen[-1][1] == 2

        wait_until(running, timeout=20, what="two tasks in flight")
        scores = [s for _, s in client.zrange(inflight_key("default"), 0, -1, withscores=True)]
        now = time.time()
        assert all(now + 55 < s <= now + 60 + 31 for s in scores), (scores, now)
        assert seen[-1] == (1, 2)  # waiting + in flight = all three, none lost from the count
        for r in results:
            r.get(timeout=30)
        wait_until(
            lambda: client.zcard(inflight_key("default")) == 0,
            timeout=10,
            what="in-flight set empty after the tasks ended",
        )
        assert client.llen("default") == 0
    finally:
        stop(proc)


def test_prune_drops_only_entries_past_their_deadline(
    own_redis: RedisServer, stack_env: dict[str, str], tmp_path: Path
) -> None:
    celery_app: Any = celery_client(env_for(own_redis, stack_env, tmp_path))
    client = redis.Redis.from_url(own_redis.url(0))
    client.zadd(inflight_key("pdf"), {"dead-worker-task": time.time() - 1})
    client.zadd(inflight_key("pdf"), {"running-task": time.time() + 100})
    prune(celery_app, ["pdf"])
    assert client.zrange(inflight_key("pdf"), 0, -1) == [b"running-task"]
