"""`make run` rides out its Redis going away, and says so when a stop cuts a task short.

One real stack (`python -m devstack`, tests/support/devstack.py) on free ports, its state in a
temp dir. Its Redis is SIGKILLed (the supervisor starts it again on the same port, with its
AOF) and, separately, SIGSTOPped for ten seconds; each time every role must be up again
afterwards (the same process or a restarted one) and a job enqueued after recovery must run.
Then the stack is stopped while an export outlives the grace period: the stack exits 1 naming
the worker, no file is left at the export's path, and the next start on the same state
finishes the job from its requeued message. A message that a worker killed outright left
unacknowledged goes back to its queue when the stack starts again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from celery.utils.nodenames import host_format

from devstack.broker import requeue_unacknowledged
from harness.processes import wait_until
from harness.redis_server import RedisServer
from service.routing import WORKER_GROUPS
from tests.support.api import wait_for_job
from tests.support.devstack import (
    ROLES,
    Devstack,
    child_running,
    devstack_ports,
    processes,
    running_devstack,
    stop_devstack,
)

#: Seconds Redis stays stopped: longer than a Redis socket timeout's share of beat's lock.
HANG = 10.0
GRACE = "1"
#: Rows an export reads one per query while the stack stops: many seconds of work.
EXPORT_ROWS = 3000
SLOW_EXPORTS = {"FLASK_EXPORT_BATCH_SIZE": "1"}
RECOVERY = 60.0


class Stacks:
    """The module's stack, started (again, on the same state and ports) when none runs."""

    def __init__(self, root: Path) -> None:
        self.root, self.ports, self.runs = root, devstack_ports(), 0
        self.exit = ExitStack()
        self.current: Devstack | None = None

    def running(self, env: Mapping[str, str] = SLOW_EXPORTS) -> Devstack:
        if self.current is None or self.current.proc.poll() is not None:
            self.runs += 1
            log = self.root / f"devstack-{self.runs}.log"
            stack = running_devstack(
                self.root / "var", log, self.ports, args=("--grace", GRACE), env=env
            )
            self.current = self.exit.enter_context(stack)
        return self.current


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacks]:
    """The whole `make run` stack with a one-second grace period and exports that read one row
    per query; each run is killed with all it started at the end of the module."""
    stacks = Stacks(tmp_path_factory.mktemp("devstack-outage"))
    with stacks.exit:
        yield stacks


def api(stack: Devstack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.api, timeout=10, headers={"Authorization": f"Bearer {stack.api_key}"}
    )


def live_children(stack: Devstack) -> int:
    return sum(1 for _, state, ppid, _ in processes() if ppid == stack.proc.pid and state != "Z")


def metric(text: str, sample: str) -> float | None:
    """The value of the sample line starting with `sample` in a Prometheus text answer."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def workers_answering(stack: Devstack) -> bool:
    app = Celery(broker=f"redis://127.0.0.1:{stack.ports['redis']}/0")
    nodes = {host_format(f"{group}@%h") for group in WORKER_GROUPS}
    try:
        replies = app.control.ping(destination=sorted(nodes), timeout=1)
    finally:
        app.close()
    return nodes <= {node for reply in replies for node in reply}


def every_role_serves(stack: Devstack, ticked_after: float | None) -> bool:
    """Every role runs and answers: web is ready, each worker answers a ping over Redis, the
    exporter reads Redis (and, with `ticked_after`, sees beat tick since then), Flower serves."""
    assert stack.proc.poll() is None, stack.output()[-3000:]
    if live_children(stack) != len(ROLES):
        return False
    if httpx.get(f"{stack.api}/readyz", timeout=5).status_code != 200:
        return False
    exporter = httpx.get(f"http://127.0.0.1:{stack.ports['metrics']}/metrics", timeout=5).text
    if metric(exporter, 'flask_celery_exporter_dependency_up{dependency="redis"}') != 1.0:
        return False
    tick = metric(exporter, "flask_celery_beat_last_tick_timestamp_seconds") or 0.0
    if ticked_after is not None and tick <= ticked_after:
        return False
    password = (stack.state / "flower-password").read_text().strip()
    flower = f"http://127.0.0.1:{stack.ports['flower']}/"
    if httpx.get(flower, auth=("admin", password), timeout=5).status_code != 200:
        return False
    return workers_answering(stack)


def a_job_runs(stack: Devstack) -> None:
    with api(stack) as http:
        job = http.post("/jobs/add", json={"a": 20, "b": 22})
        assert job.status_code == 202, job.text
        status = wait_for_job(http, job.json()["status_url"])
    assert (status["state"], status["value"]) == ("success", 42), status


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_make_run_restarts_a_killed_redis_on_its_port_and_every_role_carries_on(
    stacks: Stacks,
) -> None:
    stack = stacks.running()
    old = child_running(stack.proc.pid, "redis-server")
    assert old is not None
    before = len(stack.output())
    os.kill(old, signal.SIGKILL)

    wait_until(lambda: "restarted redis" in stack.output()[before:], timeout=30, what="restart")
    log = stack.output()[before:]
    assert "redis exited (-9)" in log and "restarting it in 1s" in log, log[-3000:]
    new = child_running(stack.proc.pid, "redis-server")
    assert new not in (None, old)
    with redis.Redis(port=stack.ports["redis"], socket_timeout=5) as ours:
        wait_until(ours.ping, timeout=10, what="the restarted Redis on its port")
        assert ours.config_get("dir")["dir"] == str((stack.state / "redis").resolve())

    wait_until(lambda: every_role_serves(stack, None), timeout=RECOVERY, what="every role")
    a_job_runs(stack)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_make_run_rides_out_a_hung_redis(stacks: Stacks) -> None:
    stack = stacks.running()
    pid = child_running(stack.proc.pid, "redis-server")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(HANG)  # the outage itself
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.time()

    wait_until(lambda: every_role_serves(stack, resumed), timeout=RECOVERY, what="every role")
    assert child_running(stack.proc.pid, "redis-server") == pid  # hung, not dead: kept
    a_job_runs(stack)


def add_users(database: Path, count: int) -> None:
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO users (email, name, plan, created_at) VALUES (?, ?, 'free', ?)",
            [(f"bulk-{i}@example.com", f"Bulk {i}", "2026-01-01 00:00:00") for i in range(count)],
        )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_task_cut_short_by_the_grace_period_fails_the_exit_and_runs_on_the_next_start(
    stacks: Stacks,
) -> None:
    stack = stacks.running()
    add_users(stack.state / "flask_celery.db", EXPORT_ROWS)
    with api(stack) as http:
        job = http.post("/jobs/export", json={"table": "users"})
        assert job.status_code == 202, job.text
        job_id, status_url = job.json()["job_id"], job.json()["status_url"]

        def exporting() -> dict[str, Any] | None:
            status: dict[str, Any] = http.get(status_url).json()
            return status if status["state"] == "progress" else None

        progress = wait_until(exporting, timeout=30, what="the export to report progress")
    assert progress["progress"]["done"] < progress["progress"]["total"]

    assert stop_devstack(stack) == 1, stack.output()[-4000:]
    output = stack.output()
    assert f"worker-reports was still running task {job_id} when the grace period" in output
    assert "worker-general was still" not in output and "worker-webhooks was still" not in output
    exports = stack.state / "storage" / "exports"
    assert not list(exports.glob("*.csv")), "a partial export at its final path"

    again = stacks.running(env={})  # the default batch size: the rerun is quick
    with api(again) as http:
        status = wait_for_job(http, status_url)
        assert status["state"] == "success", status
        export = http.get(f"/exports/{status['value']['export_id']}").json()
    assert (export["status"], export["row_count"]) == ("done", EXPORT_ROWS), export
    (csv,) = exports.glob("*.csv")
    assert len(csv.read_text().splitlines()) == export["row_count"] + 1


TAKE_AND_DIE = """
import os, sys
from kombu import Connection
with Connection(sys.argv[1]) as conn:
    queue = conn.SimpleQueue("exports")
    queue.put({"task": "exports.export_table"})
    queue.get(timeout=10)  # taken, never acknowledged
    os._exit(0)  # gone without a word, as a killed worker: nothing restores the message
"""


def test_a_message_a_dead_worker_left_unacknowledged_is_requeued_at_the_next_start(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        url = server.url(0)
        subprocess.run([sys.executable, "-c", TAKE_AND_DIE, url], check=True, timeout=60)
        with redis.Redis.from_url(url) as client:
            assert (client.llen("exports"), client.hlen("unacked")) == (0, 1)
            assert requeue_unacknowledged(url) == 1
            assert (client.llen("exports"), client.hlen("unacked")) == (1, 0)
            assert requeue_unacknowledged(url) == 0
    finally:
        server.stop()
