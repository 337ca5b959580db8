"""The default render, run: web, every worker group, beat and Flower as local processes.

Each process is its rendered container's exec-form command and environment (see
chart_processes for what is rewritten to run outside a cluster), so these tests check what only
a running chart shows: a job goes end to end through web and a worker that share the database,
the queues each worker really consumes against its ScaledObject, that SIGTERM reaches Celery
itself and starts a warm shutdown, and that the rendered probes pass against the running
processes and fail once a worker is gone.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import httpx
import pytest
import redis
from celery.utils.nodenames import host_format
from redbeat.schedulers import RedBeatConfig

from harness.auth import API_KEY, CLIENT_KEY, bearer
from harness.processes import wait_until
from harness.stack import INCLUDE_TEST_TASKS
from service.worker.inflight import inflight_key
from tests.support.api import wait_for_job
from tests.support.chart import NAME, notes, one, process_helm
from tests.support.chart_processes import LocalCluster, LocalContainer, exec_argv, stop_all

GROUPS = ("general", "reports", "webhooks")
WORKERS = {group: NAME.format(f"worker-{group}") for group in GROUPS}


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def api_client(web: LocalContainer, token: str | None = API_KEY) -> httpx.Client:
    """An HTTP client for the web pod that presents `token` (none when None)."""
    headers = bearer(token) if token else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{web.ports[8000]}", headers=headers, timeout=10)


@pytest.fixture(scope="module")
def pods(local_cluster: LocalCluster, local_web: LocalContainer) -> Iterator[dict[str, Any]]:
    """Starts every worker group's pod (with the test-only tasks), beat and Flower from the
    default render, next to the session's web pod; stops them (SIGTERM, then SIGKILL) afterwards."""
    names = [*WORKERS.values(), NAME.format("beat"), NAME.format("flower")]
    # the `tests.sleep` task, for a worker that is busy when SIGTERM arrives
    extra = {w: INCLUDE_TEST_TASKS for w in WORKERS.values()}
    started = local_cluster.start_pods(names, extra=extra)
    yield {**started, local_web.pod: local_web}
    stop_all(list(started.values()))


def test_a_user_created_through_web_is_exported_by_a_worker(pods, local_web):
    # web writes the user and the job row, the reports worker reads and updates them: one
    # database for every pod, as the bundled PostgreSQL is
    worker = pods[WORKERS["reports"]].running()
    with api_client(local_web) as api:
        email = f"{uuid4().hex}@example.com"
        created = api.post("/users", json={"email": email, "name": "Ada Lovelace"})
        assert created.status_code == 201, created.text
        job = api.post("/jobs/export", json={"table": "users"})
        assert job.status_code == 202, job.text
        status = wait_for_job(api, job.json()["status_url"])
        assert status["state"] == "success", f"{status}\n{worker.log_tail()}"
        export = api.get(f"/exports/{status['value']['export_id']}").json()
    assert export["status"] == "done" and export["row_count"] >= 1, export
    assert (
        local_web.env["FLASK_SQLALCHEMY_DATABASE_URI"]
        == worker.env["FLASK_SQLALCHEMY_DATABASE_URI"]
    )


def test_web_takes_the_release_keys_from_the_rendered_secret(local_web):
    # auth.apiKeys -> the chart's Secret -> secretKeyRef -> FLASK_API_KEYS -> the app's keys
    body = {"a": 1, "b": 2}
    with api_client(local_web, None) as anonymous:
        assert anonymous.post("/jobs/add", json=body).status_code == 401
        assert anonymous.get("/readyz").status_code == 200
    with api_client(local_web, "fck_not-a-release-key") as stranger:
        assert stranger.post("/jobs/add", json=body).status_code == 401
    with api_client(local_web, CLIENT_KEY) as client:
        assert client.post("/jobs/add", json=body).status_code == 202
        assert client.get("/dead-letters").status_code == 403
    with api_client(local_web) as operator:
        assert operator.get("/dead-letters").status_code == 200


def test_the_key_that_notes_tell_how_to_create_is_accepted(local_web):
    # NOTES.txt's `kubectl exec deploy/<web> -c web -- flask ... api-keys create NAME ...`, run
    # as kubectl exec would: in the web container's environment, against its database
    (line,) = [x for x in notes(process_helm()).splitlines() if "api-keys create" in x]
    exec_web, command = line.split(" -- ", 1)
    assert exec_web.strip().endswith(f"exec deploy/{local_web.pod} -c {local_web.spec['name']}")
    name = f"notes-{uuid4().hex[:8]}"
    created = local_web.exec([name if a == "NAME" else a for a in shlex.split(command)])
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    with api_client(local_web, token) as api:
        assert api.post("/jobs/add", json={"a": 1, "b": 2}).status_code == 202
        assert api.get("/dead-letters").status_code == 403  # enqueue and read only


def test_each_worker_consumes_exactly_the_queues_its_scaledobject_counts(
    pods, local_cluster, celery_client
):
    for group, deployment in WORKERS.items():
        worker = pods[deployment].running()
        node = host_format(flag(worker.argv, "--hostname"))
        replies = celery_client.control.inspect(destination=[node], timeout=5).active_queues()
        assert replies and node in replies, f"{node} does not answer: {worker.log_tail()}"
        consumed = {q["name"] for q in replies[node]}
        triggers = one(local_cluster.docs, "ScaledObject", deployment)["spec"]["triggers"]
        assert {t["metadata"]["listName"] for t in triggers} == consumed | {
            inflight_key(q) for q in consumed
        }, group
        broker_db = urlsplit(worker.env["FLASK_CELERY__BROKER_URL"]).path.strip("/")
        assert {t["metadata"]["databaseIndex"] for t in triggers} == {broker_db}, group


def test_every_process_is_its_exec_form_command(pods):
    for c in pods.values():
        if c.pod in WORKERS.values():
            c.running()
        assert exec_argv(c.proc.pid, c.env["PATH"]) == c.command, c.name


def test_worker_probes_pass_while_it_consumes(pods):
    kinds = ("startup", "liveness", "readiness")
    for deployment in WORKERS.values():
        worker = pods[deployment].running()
        # the three probes run one command; each distinct command runs once
        distinct = {repr(worker.spec[f"{k}Probe"]["exec"]): k for k in kinds}
        assert len(distinct) == 1, distinct
        for kind in distinct.values():
            passed, answer = worker.probe(kind)
            assert passed, f"{worker.name} {kind}: {answer}"


def test_web_probes_answer_200(local_web):
    for kind in ("startup", "liveness", "readiness"):
        passed, answer = local_web.probe(kind)
        assert passed and answer.startswith("200 "), f"web {kind}: {answer}"


def test_flower_requires_the_rendered_basic_auth(pods):
    flower = pods[NAME.format("flower")]
    url = f"http://127.0.0.1:{flower.ports[5555]}/"
    user, password = flower.env["FLOWER_BASIC_AUTH"].split(":", 1)
    assert httpx.get(url, timeout=5).status_code == 401
    assert httpx.get(url, auth=(user, password + "x"), timeout=5).status_code == 401
    assert httpx.get(url, auth=(user, password), timeout=5).status_code == 200
    for kind in ("liveness", "readiness"):
        passed, answer = flower.probe(kind)
        assert passed, f"flower {kind}: {answer}"


def test_beat_runs_and_holds_the_leader_lock(pods, celery_client):
    beat = pods[NAME.format("beat")]
    lock = RedBeatConfig(celery_client).lock_key
    client = redis.Redis.from_url(beat.env["FLASK_CELERY__BROKER_URL"], socket_timeout=5)
    wait_until(lambda: client.exists(lock), timeout=30, what=f"beat lock {lock}")
    assert beat.alive(), beat.log_tail()


def test_sigterm_to_the_worker_pid_is_a_warm_shutdown(pods, celery_client):
    worker = pods[WORKERS["webhooks"]].running()
    result = celery_client.send_task("tests.sleep", args=[3], queue="webhooks")
    wait_until(lambda: result.state == "STARTED", timeout=30, what="tests.sleep to start")
    worker.terminate()
    assert worker.proc.wait(60) == 0, worker.log_tail()
    assert result.successful() and result.get(timeout=5) >= 3
    assert "Warm shutdown" in worker.log.read_text()
    passed, answer = worker.probe("liveness")
    assert not passed, f"liveness passes for a stopped worker: {answer}"
