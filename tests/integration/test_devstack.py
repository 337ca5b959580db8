"""Smoke test of `python -m devstack`, the stack behind `make run`, driven over HTTP.

It starts the real thing (its own Redis, gunicorn, a worker per group, beat, Flower, the sinks)
on free ports with its state in tmp_path, runs three kinds of job through it, and stops it
with SIGTERM as `make` would. Linux only: leftover processes are found through /proc.
"""

from __future__ import annotations

import json
import shlex
import signal
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import redis

from devstack.options import DEMO_WEBHOOK_PATH, DEMO_WEBHOOK_SECRET
from devstack.ports import port_is_free
from harness.processes import wait_until
from service.routing import QUEUES, WORKER_GROUPS
from tests.support.devstack import ROLES, ROOT, Devstack, processes_in, running_devstack


@pytest.fixture
def devstack(tmp_path: Path) -> Iterator[Devstack]:
    """The whole `make run` stack on free ports, its own Redis included; killed if left running.

    The environment names no broker or database, so the stack starts a Redis of its own (on the
    port passed as --redis-port) and a SQLite file in its state dir, as on a fresh clone.
    """
    with running_devstack(tmp_path / "var", tmp_path / "devstack.log") as stack:
        yield stack


def readme_requests(webhook_port: int, key: str) -> list[tuple[str, str, dict[str, str], str]]:
    """(method, path, headers, body) of every curl call in the README's "Try it" section,
    in order, pointed at this stack with its API key as `$KEY`; calls whose path holds a
    placeholder (…) are left out."""
    text = (ROOT / "README.md").read_text().split("## Try it", 1)[1].split("\n## ", 1)[0]
    calls = []
    for line in text.replace("\\\n", " ").splitlines():
        if not line.startswith("curl "):
            continue
        words = shlex.split(line.split(" #", 1)[0])
        method, url, headers, body = "GET", "", {}, ""
        for flag, value in zip(words, [*words[1:], ""], strict=True):
            if flag == "-X":
                method = value
            elif flag == "-H":
                name, _, header_value = value.partition(": ")
                headers[name] = header_value.replace("$KEY", key)
            elif flag == "-d":
                body = value.replace("127.0.0.1:8090", f"127.0.0.1:{webhook_port}")
            elif flag.startswith("localhost:8000"):
                url = flag.removeprefix("localhost:8000")
        if "…" not in url:
            calls.append((method, url, headers, body))
    assert len(calls) >= 10, calls
    return calls


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_make_run_stack_runs_jobs_and_stops_cleanly_on_sigterm(
    devstack: Devstack, request: pytest.FixtureRequest
) -> None:
    key_file = devstack.state / "api-key"
    key = key_file.read_text().strip()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert f"API key   {key}" in devstack.output(), "the summary prints the development key"
    anonymous = httpx.Client(base_url=devstack.api, timeout=10)
    request.addfinalizer(anonymous.close)
    assert anonymous.post("/jobs/add", json={"a": 2, "b": 3}).status_code == 401
    http = httpx.Client(
        base_url=devstack.api, timeout=10, headers={"Authorization": f"Bearer {key}"}
    )
    request.addfinalizer(http.close)
    assert len(devstack.sessions) == len(ROLES), devstack.sessions

    email = f"smoke-{uuid4().hex[:8]}@example.com"
    user = http.post("/users", json={"email": email, "name": "Smoke"})
    assert user.status_code == 201, user.text
    job = http.post("/jobs/welcome-email", json={"user_id": user.json()["id"]})
    assert job.status_code == 202, job.text

    def mail_to_user() -> bool:
        mails = (devstack.state / "mail").glob("*.eml")
        return any(
            message_from_bytes(p.read_bytes(), policy=policy.default)["To"] == email for p in mails
        )

    wait_until(mail_to_user, timeout=20, what=f"a mail to {email} in the SMTP sink")

    add = http.post("/jobs/add", json={"a": 2, "b": 3})
    assert add.status_code == 202, add.text

    def add_status() -> dict[str, Any]:
        status: dict[str, Any] = http.get(add.json()["status_url"]).json()
        return status if status["ready"] else {}

    status = wait_until(add_status, timeout=20, what="jobs.add to finish")
    assert (status["state"], status["value"]) == ("success", 5)

    hook = f"http://127.0.0.1:{devstack.ports['webhook']}{DEMO_WEBHOOK_PATH}"
    endpoint = http.post("/webhook-endpoints", json={"url": hook, "secret": DEMO_WEBHOOK_SECRET})
    assert endpoint.status_code == 201, endpoint.text
    event = {"endpoint_id": endpoint.json()["id"], "event_type": "smoke.test", "payload": {}}
    assert http.post("/jobs/webhook", json=event).status_code == 202

    def webhooks_received() -> list[dict[str, Any]]:
        records = (json.loads(p.read_text()) for p in (devstack.state / "webhooks").glob("*.json"))
        return [r for r in records if r["path"] == DEMO_WEBHOOK_PATH]

    received = wait_until(webhooks_received, timeout=20, what="a webhook at the receiver")
    assert received[0]["signature_valid"] is True

    flower = f"http://127.0.0.1:{devstack.ports['flower']}/"
    password = (devstack.state / "flower-password").read_text().strip()
    assert (devstack.state / "flower-password").stat().st_mode & 0o777 == 0o600
    assert httpx.get(flower, timeout=10).status_code == 401
    assert httpx.get(flower, auth=("admin", password), timeout=10).status_code == 200

    # the README's calls carry their own key: sent as written, without the client's
    for method, path, headers, body in readme_requests(devstack.ports["webhook"], key):
        if method == "POST":
            response = anonymous.post(path, content=body, headers=headers)
            assert response.status_code < 300, (path, body, response.text)
        else:  # a read may wait for its job (an export's file, say)
            wait_until(
                lambda p=path, h=headers: anonymous.get(p, headers=h).status_code == 200,
                timeout=30,
                what=path,
            )

    # every process group serves its own metrics, where the summary says
    web_metrics = http.get("/metrics").text
    assert 'flask_celery_http_requests_total{endpoint="/users",method="POST",status="201"}' in (
        web_metrics
    )
    assert "celery_task_sent_total{hostname=" in web_metrics
    first = devstack.ports["metrics"]
    exporter = httpx.get(f"http://127.0.0.1:{first}/metrics", timeout=10).text
    for queue in QUEUES:
        assert f'celery_queue_length{{queue_name="{queue}"}}' in exporter
    for i, group in enumerate(WORKER_GROUPS, start=1):
        worker = httpx.get(f"http://127.0.0.1:{first + i}/metrics", timeout=10).text
        assert "celery_worker_up{" in worker, group
    assert f"exporter http://127.0.0.1:{first}/metrics" in devstack.output()

    redis_port = devstack.ports["redis"]
    with redis.Redis(host="127.0.0.1", port=redis_port) as ours:  # the stack's, keeping its AOF
        assert ours.config_get("dir")["dir"] == str((devstack.state / "redis").resolve())
    assert f"redis://127.0.0.1:{redis_port}/0" in devstack.output()
    assert not (devstack.state / "redis.port").exists()  # a chosen port is not remembered
    devstack.proc.send_signal(signal.SIGTERM)
    assert devstack.proc.wait(timeout=45) == 0, devstack.output()[-4000:]
    assert processes_in(devstack.sessions) == []
    for port in [*devstack.ports.values(), *range(first, first + 1 + len(WORKER_GROUPS))]:
        assert port_is_free(port), f"port {port} still open after the stack stopped"
    assert "Warm shutdown" in devstack.output()
