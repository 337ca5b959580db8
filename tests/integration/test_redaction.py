"""No secret from a URL, a setting or a request reaches a log line or an API answer.

One stack whose every URL carries a secret: a redis-server with `requirepass` behind the broker
and result-backend URLs, a webhook receiver URL with a password and a `?token=`, an SMTP
password, and the API key on every request. It runs jobs that succeed, fail for good with the
broker's and the receiver's URLs in their error (a welcome mail to a "user id" that is those
URLs: the task's error quotes its argument), and deliver to a receiver that refuses them; then
the broker stops and `/readyz` is asked. Every line gunicorn, the worker, beat and the
migration wrote, and every answer, is searched for each secret, and must also hold what proves
it was captured: the broker's and the receiver's host:port.

The database stays SQLite: the PostgreSQL server the ledger tests start has no password
(`--auth=trust`), and its driver is an optional extra, so a database URL with a password is
covered by the unit tests of `service.redact` only.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx

from devstack.sinks import WebhookSink
from harness.auth import API_KEY, bearer
from harness.processes import free_port, stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import (
    BIN,
    celery_client,
    spawn,
    stack_environment,
    start_web,
    start_worker,
)
from service.routing import QUEUES

BROKER_PASSWORD = "S3cretPW-broker-6a1f"
HOOK_PASSWORD = "HookPW-9c2e"
HOOK_TOKEN = "HookTok-41d7"
SMTP_PASSWORD = "SmtpPW-77b0"
HOOK_PATH = f"/hooks/refuses?token={HOOK_TOKEN}"


def finished(api: httpx.Client, job_id: str, answers: list[str]) -> dict[str, Any]:
    """The job's status once it is ready; every answer read is kept in `answers`."""

    def ready() -> dict[str, Any] | None:
        response = api.get(f"/jobs/{job_id}")
        answers.append(response.text)
        body: dict[str, Any] = response.json()
        return body if body.get("ready") else None

    return wait_until(ready, timeout=30, what=f"job {job_id} to finish")


def dead_letter_of(api: httpx.Client, task: str, answers: list[str]) -> dict[str, Any]:
    """The one dead letter of `task`, in full, once it is there."""

    def listed() -> list[dict[str, Any]]:
        response = api.get("/dead-letters", params={"task": task})
        answers.append(response.text)
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    (letter,) = wait_until(listed, timeout=30, what=f"a dead letter of {task}")
    response = api.get(f"/dead-letters/{letter['id']}")
    answers.append(response.text)
    full: dict[str, Any] = response.json()
    return full


def test_no_secret_reaches_a_log_line_or_an_answer(tmp_path: Path) -> None:
    broker = RedisServer(tmp_path / "redis", password=BROKER_PASSWORD).start()
    receiver = WebhookSink(tmp_path / "hooks", port=free_port()).start()
    receiver.status_script[HOOK_PATH] = [400] * 5  # permanent: a dead letter at once
    hook_url = f"http://hookuser:{HOOK_PASSWORD}@127.0.0.1:{receiver.port}{HOOK_PATH}"
    state, logs = tmp_path / "state", tmp_path / "logs"
    logs.mkdir()
    (state / "prometheus").mkdir(parents=True)
    env = stack_environment(
        state,
        broker.url(0),
        broker.url(1),
        {
            "FLASK_SMTP_USERNAME": "mailer",
            "FLASK_SMTP_PASSWORD": SMTP_PASSWORD,
            "FLASK_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
            "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus"),
            "PYTHONUNBUFFERED": "1",
        },
    )
    assert BROKER_PASSWORD in env["FLASK_CELERY__BROKER_URL"]
    migrate = subprocess.run(
        [BIN / "flask", "--app", "service.wsgi", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert migrate.returncode == 0, migrate.stderr
    (logs / "migrate.log").write_text(migrate.stdout + migrate.stderr)

    answers: list[str] = []
    procs = []
    try:
        web, url = start_web(env, logs / "gunicorn.log", workers=1)
        procs.append(web)
        worker, _ = start_worker(env, QUEUES, logs / "worker.log", concurrency=1)
        procs.append(worker)
        beat_cmd = [str(BIN / "celery"), "-A", "service.make_celery", "beat", "--loglevel", "INFO"]
        procs.append(spawn(beat_cmd, env, logs / "beat.log"))
        wait_until(
            lambda: "Starting" in (logs / "beat.log").read_text(), timeout=30, what="beat's start"
        )
        api = httpx.Client(base_url=url, timeout=10, headers=bearer())

        # a job that succeeds
        added = api.post("/jobs/add", json={"a": 2, "b": 3})
        assert added.status_code == 202, added.text
        assert finished(api, added.json()["job_id"], answers)["value"] == 5

        # a task that fails for good, its error quoting the broker's and the receiver's URLs;
        # re-driven through the API, it becomes a job whose status carries the error
        urls = f"{broker.url(0)} {hook_url}"
        celery_client(env).send_task("notify.send_welcome_email", (urls,), queue="email")
        letter = dead_letter_of(api, "notify.send_welcome_email", answers)
        assert f"redis://:***@127.0.0.1:{broker.port}/0" in letter["exception"]
        assert f"redis://:***@127.0.0.1:{broker.port}/0" in letter["traceback"]
        assert f"redis://:***@127.0.0.1:{broker.port}/0" in letter["args"][0]
        redriven = api.post(f"/dead-letters/{letter['id']}/redrive")
        assert redriven.status_code == 202, redriven.text
        answers.append(redriven.text)
        failed = finished(api, redriven.json()["job_id"], answers)
        assert failed["state"] == "failure"
        assert f"hookuser:***@127.0.0.1:{receiver.port}" in failed["error"]

        # a webhook the receiver refuses
        endpoint = api.post("/webhook-endpoints", json={"url": hook_url})
        assert endpoint.status_code == 201, endpoint.text
        # the creation answer shows its caller the URL and the signing secret it registered,
        # once, as the API documents; it is left out of the search below
        signing_secret = endpoint.json()["secret"]
        body = {"endpoint_id": endpoint.json()["id"], "event_type": "order.paid", "payload": {}}
        delivery = api.post("/jobs/webhook", json=body)
        assert delivery.status_code == 202, delivery.text
        assert finished(api, delivery.json()["job_id"], answers)["state"] == "failure"
        assert receiver.received(HOOK_PATH), "the receiver was never called"
        dead_letter_of(api, "webhooks.deliver", answers)

        # the broker goes away
        stop(procs.pop())  # beat
        stop(procs.pop(), timeout=30)  # the worker, warm
        broker.stop()
        ready = httpx.get(f"{url}/readyz", timeout=10)
        answers.append(ready.text)
        assert ready.status_code == 503
        # the exception's type only: no text, no address
        assert re.fullmatch(r"error: \w+", ready.json()["checks"]["broker"]), ready.text
        wait_until(
            lambda: f"127.0.0.1:{broker.port}" in (logs / "gunicorn.log").read_text(),
            timeout=10,
            what="the readiness warning in gunicorn's log",
        )
    finally:
        for proc in reversed(procs):
            stop(proc, timeout=30)
        receiver.stop()
        broker.stop()

    secrets = (BROKER_PASSWORD, HOOK_PASSWORD, HOOK_TOKEN, SMTP_PASSWORD, API_KEY, signing_secret)
    captured = {path.name: path.read_text(errors="replace") for path in logs.iterdir()}
    captured["answers"] = "\n".join(answers)
    leaks = [
        f"{name}:{number}: {line}"
        for name, text in captured.items()
        for number, line in enumerate(text.splitlines(), 1)
        if any(secret in line for secret in secrets)
    ]
    assert leaks == []
    # what proves each source was captured: the servers it names, redacted
    broker_address, hook_address = f"127.0.0.1:{broker.port}", f"127.0.0.1:{receiver.port}"
    assert broker_address in captured["gunicorn.log"]  # the readiness warning
    assert broker_address in captured["worker.log"]  # the banner, the failure, its traceback
    assert f"{hook_address}/hooks/refuses?token=***" in captured["worker.log"]  # httpx's line
    assert broker_address in captured["beat.log"]  # its banner
    assert "redis://:***@" in captured["answers"] and hook_address in captured["answers"]
    assert json.loads(ready.text)["status"] == "unavailable"
