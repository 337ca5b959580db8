"""The image, built with podman and run as the rendered chart deploys it: web, a worker, beat.

The Dockerfile is built on the local Debian base (podman's layer cache makes a rebuild of an
unchanged tree a cache hit). The default render's migrate init container, web, the `general`
worker group and beat then run as containers with their rendered command, args, env, uid/gid,
read-only root filesystem and emptyDir mounts (see tests/image/podman.py for what is stood in
for), on the host's network against a redis-server and a PostgreSQL on free loopback ports.

A job enqueued through the containerised web runs on the containerised worker. For the warm
shutdown, the worker also loads the test-only tasks: the repository's harness/ is mounted
read-only and `--include harness.tasks` added to its command; `tests.effect` holds a pool
process for HOLD seconds, then writes a user row named after its argument.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import redis
import sqlalchemy as sa
from redbeat.schedulers import RedBeatConfig

from harness.auth import API_KEY, bearer
from harness.postgres import Postgres, postgres_bindir
from harness.processes import wait_until
from harness.redis_server import RedisServer
from harness.stack import INCLUDE_TEST_TASKS, celery_client
from harness.tasks import EXECUTIONS
from tests.image.podman import TEST_MOUNTS, PodmanPod, build_context, build_image, podman
from tests.support.api import new_user, wait_for_job
from tests.support.chart import NAME, ROOT, TEST_API_KEYS, by_kind, container, one, process_helm
from tests.support.chart import render as render_chart

ROLES = {
    "web": NAME.format("web"),
    "worker": NAME.format("worker-general"),
    "beat": NAME.format("beat"),
}
#: How long the warm-shutdown task holds its pool process, in seconds.
HOLD = 8
#: Figures for the README and the lead, printed at the end of the module (pytest -s shows them).
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render_chart(process_helm(), TEST_API_KEYS)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_context(tmp_path_factory.mktemp("image-context"))


@pytest.fixture(scope="module")
def image(docs: list[dict[str, Any]], context: Path) -> Iterator[str]:
    """The chart's image reference, built from this tree under that name."""
    tag = container(one(docs, "Deployment", ROLES["web"]))["image"]
    FIGURES["build_s"] = round(build_image(tag, context)[0], 1)
    size = podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
    FIGURES["image_mb"] = round(int(size) / 1e6)
    yield tag
    print(f"\nimage figures: {json.dumps(FIGURES)}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Postgres]]:
    """This module's own Redis and PostgreSQL: no other test's messages reach its worker."""
    redis_server = RedisServer(tmp_path_factory.mktemp("image-redis")).start()
    postgres = Postgres(postgres_bindir()).start()
    yield redis_server, postgres
    redis_server.stop()
    postgres.stop()


@pytest.fixture(scope="module")
def pods(
    docs: list[dict[str, Any]], image: str, servers: tuple[RedisServer, Postgres]
) -> Iterator[dict[str, PodmanPod]]:
    """Migrate once (the pods' shared init container), then start web, the worker and beat;
    returns once each passes its startup probe. Removes the containers afterwards."""
    redis_server, postgres = servers
    secrets = {
        s["metadata"]["name"]: {k: _b64(v) for k, v in s.get("data", {}).items()}
        for s in by_kind(docs, "Secret")
    }

    def pod(role: str, init: bool = False) -> PodmanPod:
        spec = one(docs, "Deployment", ROLES[role])["spec"]["template"]["spec"]
        (c,) = spec["initContainers" if init else "containers"]
        return PodmanPod(ROLES[role], spec, c, secrets, redis_server.port, postgres.url)

    run_id = uuid4().hex[:8]
    started: list[PodmanPod] = []
    clock = time.monotonic()
    try:
        migrate = pod("web", init=True).run(f"fc-{run_id}-migrate")
        started.append(migrate)
        assert migrate.wait_exit(180) == 0, migrate.logs()
        FIGURES["migrate_s"] = round(time.monotonic() - clock, 1)
        running = {role: pod(role) for role in ROLES}
        test_tasks = {ROOT / "harness": f"{TEST_MOUNTS}/harness"}
        for role, p in running.items():
            worker = role == "worker"
            extra = INCLUDE_TEST_TASKS if worker else ()
            p.run(f"fc-{run_id}-{role}", extra=extra, mounts=test_tasks if worker else None)
            started.append(p)
        for p in running.values():
            p.wait_ready()
        FIGURES["pods_ready_s"] = round(time.monotonic() - clock, 1)
        yield running
    finally:
        for p in started:
            p.remove()


def _b64(value: str) -> str:
    return base64.b64decode(value).decode()


def api(web: PodmanPod) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{web.ports[8000]}", headers=bearer(API_KEY), timeout=10
    )


def pid1_argv(pod: PodmanPod) -> list[str]:
    """PID 1's argv in the container, a console script's interpreter folded back into its name
    (the kernel runs `celery` as `python /opt/venv/bin/celery`: still the exec form)."""
    out = pod.exec("cat", "/proc/1/cmdline")
    argv = out.stdout.split("\0")[:-1]
    if len(argv) > 1 and Path(argv[0]).name.startswith("python") and argv[1].startswith("/"):
        return [Path(argv[1]).name, *argv[2:]]
    return argv


def test_each_container_runs_its_rendered_command_as_its_uid_on_a_read_only_root(pods):
    for role, pod in pods.items():
        extra = list(INCLUDE_TEST_TASKS) if role == "worker" else []
        assert pid1_argv(pod) == pod.command + extra, role
        security = {**pod.spec["securityContext"], **pod.container["securityContext"]}
        ids = pod.exec("sh", "-c", "id -u; id -g; id -G").stdout.split("\n")
        assert ids[:2] == [str(security["runAsUser"]), str(security["runAsGroup"])], role
        assert str(pod.spec["securityContext"]["fsGroup"]) in ids[2].split(), role
        root = pod.exec("touch", "/written-to-root")
        assert root.returncode != 0 and "Read-only file system" in root.stderr, role
        for mount in pod.container["volumeMounts"]:
            path = f"{mount['mountPath']}/written-{uuid4().hex[:6]}"
            assert pod.exec("touch", path).returncode == 0, f"{role}: {path} unwritable"
        env = dict(
            line.split("=", 1) for line in pod.exec("env").stdout.splitlines() if "=" in line
        )
        assert {k: env.get(k) for k in pod.env()} == pod.env(), role


def test_a_job_enqueued_through_web_runs_on_the_worker(pods):
    # periodic.expire_trials, on the `default` queue the general group consumes: its effect is
    # the user's plan, written by the worker and read back through web
    with api(pods["web"]) as client:
        user = new_user(client, trial_days=0)
        job = client.post("/jobs/periodic", json={"task": "expire_trials"})
        assert job.status_code == 202, f"{job.text}\n{pods['web'].logs()}"
        status = wait_for_job(client, job.json()["status_url"], timeout=60)
        assert status["state"] == "success", f"{status}\n{pods['worker'].logs()}"
        assert status["value"]["expired"] >= 1, status
        assert client.get(f"/users/{user['id']}").json()["plan"] == "expired"


def test_beat_holds_the_leader_lock_and_passes_its_probes(pods, servers, tmp_path):
    beat = pods["beat"]
    env = {**beat.env(), "FLASK_STORAGE_DIR": str(tmp_path)}
    lock = RedBeatConfig(celery_client(env)).lock_key
    client = redis.Redis.from_url(env["FLASK_CELERY__BROKER_URL"], socket_timeout=5)
    wait_until(lambda: client.exists(lock), timeout=60, what=f"beat lock {lock}")
    passed, answer = beat.probe("liveness")
    assert passed, answer


def test_sigterm_to_the_worker_container_finishes_the_task_and_exits_0(pods, servers, tmp_path):
    worker = pods["worker"]
    env = {**worker.env(), "FLASK_STORAGE_DIR": str(tmp_path)}
    n = int(uuid4().int % 1_000_000_000)
    celery_client(env).send_task("tests.effect", args=(n, HOLD), queue="default")
    broker = redis.Redis.from_url(env["FLASK_CELERY__BROKER_URL"], socket_timeout=5)
    wait_until(
        lambda: str(n).encode() in broker.lrange(EXECUTIONS, 0, -1),
        timeout=60,
        what="tests.effect to start on the worker",
    )
    sent = time.monotonic()
    podman("kill", "--signal", "TERM", worker.name)
    code = worker.wait_exit(timeout=worker.grace + 30)
    took = time.monotonic() - sent
    FIGURES.update(
        hold_s=HOLD, sigterm_to_exit_s=round(took, 1), exit_code=code, grace_s=worker.grace
    )
    logs = worker.logs(400)
    assert code == 0, logs
    assert took < worker.grace, f"exited {took:.0f}s after SIGTERM, grace is {worker.grace}s"
    assert "Warm shutdown" in logs, logs
    engine = sa.create_engine(env["FLASK_SQLALCHEMY_DATABASE_URI"])
    with engine.connect() as db:
        rows = db.execute(
            sa.text("SELECT count(*) FROM users WHERE name = :n"), {"n": f"effect {n}"}
        )
        assert rows.scalar_one() == 1, logs
    engine.dispose()


def test_a_second_build_of_the_same_tree_is_a_cache_hit(image, context):
    seconds, output = build_image(image, context)
    FIGURES["cached_build_s"] = round(seconds, 1)
    steps = re.findall(r"STEP \d+/\d+: (?!FROM )(.*)", output)
    hits = output.count("--> Using cache")
    assert steps and hits == len(steps), f"{len(steps) - hits} steps ran again:\n{output}"
