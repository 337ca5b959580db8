"""Every kind of job, enqueued through the real HTTP API and run by real workers.

Each test asserts the job's effect where it lands: the SMTP sink, the PDF on disk, the CSV
download, the webhook receiver, the rows a periodic task changes; on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from uuid import uuid4

import httpx
import pytest
import redis
import sqlalchemy as sa
from pypdf import PdfReader

from devstack.sinks import SmtpSink, WebhookSink
from harness.processes import wait_until
from harness.redis_server import RedisServer
from service.data.db import db, utcnow
from service.data.models import EmailLog, Export, User
from tests.support.api import new_user, wait_for_job

#: The guarantees hold on both databases the service supports (the chart's is PostgreSQL).
pytestmark = pytest.mark.databases("sqlite", "postgresql")


class RedisCommands:
    """Every command the Redis server runs while this is open (MONITOR), every database."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=10, decode_responses=True)
        self._monitor = self._client.monitor()

    def __enter__(self) -> RedisCommands:
        self._monitor.__enter__()  # the server has answered MONITOR when this returns
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._monitor.__exit__()
        self._client.close()

    def until_now(self) -> list[tuple[str, str, str]]:
        """(command, first argument, the other arguments) of every command run so far."""
        marker = f"until-now-{uuid4()}"
        self._client.echo(marker)  # another connection: it ends the stream read below
        seen: list[tuple[str, str, str]] = []
        while True:
            name, _, args = self._monitor.next_command()["command"].partition(" ")
            if name.upper() == "ECHO" and args == marker:
                return seen
            first, _, rest = args.partition(" ")
            seen.append((name.upper(), first, rest))


def count(seen: list[tuple[str, str, str]], command: str, key: str, needle: str) -> int:
    """How many of `seen` ran `command` on `key` with `needle` in their other arguments."""
    return sum(c[:2] == (command, key) and needle in c[2] for c in seen)


def test_add_job_answers_at_once_and_reports_the_sum(api: httpx.Client) -> None:
    response = api.post("/jobs/add", json={"a": 2, "b": 3})
    assert response.status_code == 202
    body = response.json()
    assert body["status_url"] == f"/jobs/{body['job_id']}"
    status = wait_for_job(api, body["status_url"])
    assert status["state"] == "success" and status["successful"] is True
    assert status["value"] == 5
    assert status["error"] is None


def test_welcome_email_reaches_the_smtp_server_once(api: httpx.Client, smtp_sink: SmtpSink) -> None:
    user = new_user(api)
    first = api.post("/jobs/welcome-email", json={"user_id": user["id"]}).json()
    assert wait_for_job(api, first["status_url"])["value"]["status"] == "sent"
    second = api.post("/jobs/welcome-email", json={"user_id": user["id"]}).json()
    assert wait_for_job(api, second["status_url"])["value"]["status"] == "duplicate"

    mails = [m for m in smtp_sink.messages() if m["To"] == user["email"]]
    assert len(mails) == 1
    assert mails[0]["Subject"] == "Welcome, Ada Lovelace"
    assert "welcome aboard" in mails[0].get_content()


def test_invoice_pdf_is_rendered_and_downloadable(api: httpx.Client) -> None:
    user = new_user(api)
    invoice = api.post(
        "/invoices",
        json={
            "user_id": user["id"],
            "currency": "EUR",
            "lines": [
                {"description": "Consulting", "quantity": 3, "unit_price_cents": 12000},
                {"description": "Travel", "quantity": 1, "unit_price_cents": 4550},
            ],
        },
    ).json()
    job = api.post("/jobs/invoice-pdf", json={"invoice_id": invoice["id"]}).json()
    assert wait_for_job(api, job["status_url"])["state"] == "success"

    assert api.get(f"/invoices/{invoice['id']}").json()["pdf_ready"] is True
    pdf = api.get(f"/invoices/{invoice['id']}/pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert invoice["number"] in text
    assert "Consulting" in text and "405.50 EUR" in text


def test_export_writes_every_row_and_reports_progress(api: httpx.Client, stack_app: Any) -> None:
    users = [new_user(api) for _ in range(3)]
    job = api.post("/jobs/export", json={"table": "users"}).json()
    status = wait_for_job(api, job["status_url"])
    assert status["state"] == "success"
    export_id = status["value"]["export_id"]

    export = api.get(f"/exports/{export_id}").json()
    assert export["status"] == "done"
    download = api.get(export["download_url"])
    rows = list(csv.DictReader(io.StringIO(download.text)))
    with stack_app.app_context():
        expected = db.session.scalar(sa.select(sa.func.count()).select_from(User))
    assert len(rows) == export["row_count"] == expected
    assert {u["email"] for u in users} <= {r["email"] for r in rows}
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)


def test_export_progress_is_visible_while_it_runs(api: httpx.Client, stack_app: Any) -> None:
    with stack_app.app_context():
        db.session.add_all(
            User(email=f"bulk-{uuid4().hex}@example.com", name="Bulk") for _ in range(3000)
        )
        db.session.commit()
    job = api.post("/jobs/export", json={"table": "users"}).json()

    def progress() -> dict[str, Any] | None:
        status = api.get(job["status_url"]).json()
        assert status["state"] != "success", "finished before a PROGRESS state could be read"
        return status if status["state"] == "progress" else None

    seen = wait_until(progress, timeout=30, interval=0.005, what="PROGRESS state")
    assert 0 < seen["progress"]["done"] <= seen["progress"]["total"]
    assert seen["ready"] is False
    assert wait_for_job(api, job["status_url"])["state"] == "success"


def test_webhook_is_signed_and_delivered(api: httpx.Client, webhook_sink: WebhookSink) -> None:
    # Two endpoints signed at the same moment: the receiver checks the first with its own
    # secret, the second with the first's. Both signatures are fresh, so only the secret can
    # make the second fail. The paths are this run's own: the receiver serves every database's
    # stack.
    signed, elsewhere_path = f"/hooks/signed-{uuid4().hex}", f"/hooks/elsewhere-{uuid4().hex}"
    paths = (signed, elsewhere_path)
    endpoints = [
        api.post("/webhook-endpoints", json={"url": f"{webhook_sink.url}{path}"}).json()
        for path in paths
    ]
    for path in paths:
        webhook_sink.secrets[path] = endpoints[0]["secret"]
    jobs = [
        api.post(
            "/jobs/webhook",
            json={
                "endpoint_id": endpoint["id"],
                "event_type": "invoice.paid",
                "payload": {"invoice": 42},
            },
        ).json()
        for endpoint in endpoints
    ]
    for job in jobs:
        status = wait_for_job(api, job["status_url"])
        assert status["value"] == {"status": "delivered", "response_status": 200}

    [received] = webhook_sink.received(signed)
    assert received["signature_valid"] is True
    event = json.loads(received["body"])
    assert event["type"] == "invoice.paid" and event["data"] == {"invoice": 42}
    assert received["event_id"] == event["id"]
    [elsewhere] = webhook_sink.received(elsewhere_path)
    assert elsewhere["signature_valid"] is False


def test_webhook_retries_a_5xx_then_delivers_with_the_same_event_id(
    api: httpx.Client, webhook_sink: WebhookSink
) -> None:
    path = f"/hooks/flaky-{uuid4().hex}"  # this run's own: the receiver serves every stack
    endpoint = api.post("/webhook-endpoints", json={"url": f"{webhook_sink.url}{path}"}).json()
    webhook_sink.secrets[path] = endpoint["secret"]
    webhook_sink.status_script[path] = [503]
    job = api.post(
        "/jobs/webhook", json={"endpoint_id": endpoint["id"], "event_type": "x.y", "payload": {}}
    ).json()
    assert wait_for_job(api, job["status_url"], timeout=60)["state"] == "success"
    calls = webhook_sink.received(path)
    assert [c["answered"] for c in calls] == [503, 200]
    assert calls[0]["event_id"] == calls[1]["event_id"]


def test_expire_trials_changes_only_ended_trials(api: httpx.Client, stack_app: Any) -> None:
    ended, running = new_user(api), new_user(api)
    with stack_app.app_context():
        db.session.get(User, ended["id"]).trial_ends_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    job = api.post("/jobs/periodic", json={"task": "expire_trials"}).json()
    assert wait_for_job(api, job["status_url"])["value"]["expired"] >= 1
    assert api.get(f"/users/{ended['id']}").json()["plan"] == "expired"
    assert api.get(f"/users/{running['id']}").json()["plan"] == "trial"


def test_trial_reminders_mail_only_trials_ending_soon(
    api: httpx.Client, stack_app: Any, smtp_sink: SmtpSink
) -> None:
    soon, later = new_user(api), new_user(api)
    with stack_app.app_context():
        db.session.get(User, soon["id"]).trial_ends_at = utcnow() + timedelta(hours=3)
        db.session.commit()
    for _ in range(2):  # a second run for the same trial end must not mail again
        job = api.post("/jobs/periodic", json={"task": "queue_trial_reminders"}).json()
        wait_for_job(api, job["status_url"])

        def reminded() -> int:
            with stack_app.app_context():
                return db.session.scalar(
                    sa.select(sa.func.count())
                    .select_from(EmailLog)
                    .where(EmailLog.user_id == soon["id"], EmailLog.kind == "trial_reminder")
                )

        wait_until(reminded, what="reminder recorded")
    recipients = [m["To"] for m in smtp_sink.messages() if m["Subject"] == "Your trial ends soon"]
    assert recipients.count(soon["email"]) == 1
    assert later["email"] not in recipients


def test_countdown_delays_the_job(api: httpx.Client) -> None:
    countdown = 2
    asked = datetime.now(UTC)
    job = api.post("/jobs/add", json={"a": 1, "b": 1, "countdown": countdown}).json()
    assert api.get(job["status_url"]).json()["state"] == "pending"
    status = wait_for_job(api, job["status_url"])
    assert status["value"] == 2
    # A loose lower bound: a countdown that is ignored starts the job within milliseconds.
    started = datetime.fromisoformat(status["started_at"])
    assert started - asked >= timedelta(seconds=countdown - 0.5), (asked, status)


def test_idempotency_key_returns_the_same_job_without_enqueuing_again(
    api: httpx.Client, redis_server: RedisServer
) -> None:
    key = {"Idempotency-Key": f"test-{uuid4()}"}
    with RedisCommands(redis_server.url()) as commands:
        first = api.post("/jobs/add", json={"a": 20, "b": 22}, headers=key)
        again = api.post("/jobs/add", json={"a": 20, "b": 22}, headers=key)
        other = api.post("/jobs/add", json={"a": 1, "b": 1}, headers=key)
        assert first.status_code == again.status_code == 202
        job_id = first.json()["job_id"]
        assert again.json()["job_id"] == job_id
        assert again.headers["Idempotent-Replayed"] == "true"
        assert other.status_code == 422
        assert wait_for_job(api, first.json()["status_url"])["value"] == 42
        seen = commands.until_now()
    # A replay publishes nothing: one message for the job reached the broker, the worker took
    # it once (its in-flight entry is added on receipt, removed when the run ends: one run),
    # and the job's row counts one attempt.
    assert count(seen, "LPUSH", "default", job_id) == 1
    assert count(seen, "ZADD", "flask_celery:inflight:default", job_id) == 1
    assert count(seen, "ZREM", "flask_celery:inflight:default", job_id) == 1
    assert api.get(f"/jobs/{job_id}").json()["attempts"] == 1


def test_unknown_job_id_is_404(api: httpx.Client) -> None:
    response = api.get(f"/jobs/{uuid4()}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_a_permanent_failure_fails_at_once_and_is_dead_lettered(
    api: httpx.Client, stack_app: Any
) -> None:
    # published directly: the API itself refuses ids that do not exist
    celery_app = stack_app.extensions["celery"]
    result = celery_app.send_task("notify.send_welcome_email", args=(10**9,), ignore_result=False)
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    assert "User 1000000000 does not exist" in str(result.result)

    query = {"task": "notify.send_welcome_email"}
    letters = wait_until(
        lambda: api.get("/dead-letters", params=query).json()["items"], what="dead letter recorded"
    )
    [letter] = [d for d in letters if d["task_id"] == result.id]
    assert letter["attempts"] == 1  # permanent: no retry
    assert letter["args"] == [10**9]
    assert letter["exception"].startswith("PermanentError: User 1000000000 does not exist")
    detail = api.get(f"/dead-letters/{letter['id']}").json()
    assert "Traceback" in detail["traceback"]


def test_a_dead_lettered_export_is_marked_failed(api: httpx.Client, stack_app: Any) -> None:
    with stack_app.app_context():
        export = Export(table_name="no_such_table")  # the API only accepts known tables
        db.session.add(export)
        db.session.commit()
        export_id = export.id
    result = stack_app.extensions["celery"].send_task(
        "exports.export_table", args=(export_id,), ignore_result=False
    )
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    body = wait_until(
        lambda: (e := api.get(f"/exports/{export_id}").json())["status"] == "failed" and e,
        what="export marked failed",
    )
    assert body["download_url"] is None
