"""Retries that don't hurt: webhooks against a scripted receiver, timed and counted.

One webhooks worker runs with the policy a test can wait for (3 retries, 0.5 s base: steps of
0.5, 1 and 2 s, each delay drawn from the upper half of its step). The receiver on 127.0.0.2
is allowlisted; the one on 127.0.0.1 is not, so a delivery there must be refused before any
request is made. Jobs and endpoints go through the API of an app on the same database.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from devstack.sinks import WebhookSink
from harness.auth import authorized
from harness.faults import Stack
from harness.postgres import Database
from harness.processes import wait_until
from service.data.db import db
from service.data.models import WebhookDelivery, WebhookEndpoint

#: The guarantees hold on both databases the service supports (the chart's is PostgreSQL).
pytestmark = pytest.mark.databases("sqlite", "postgresql")

POLICY = {
    "FLASK_RETRY_MAX_RETRIES": "3",
    "FLASK_RETRY_BACKOFF_BASE": "0.5",
    "FLASK_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.2/32"]',
}
#: Delay steps of retries 1, 2, 3: base * 2**n; each delay lies in [step / 2, step].
STEPS = (0.5, 1.0, 2.0)
#: What a gap may add to its delay: the failing call, the retry's publish, the ETA timer.
SLACK = 1.0

_paths = itertools.count()


class RetryAfterSink(WebhookSink):
    """The scripted receiver, plus a Retry-After header on the 429/503 answers of a path."""

    def __init__(self, directory: Path, host: str) -> None:
        self.retry_after: dict[str, str] = {}  # path -> header value; _handler needs it
        super().__init__(directory, host=host)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base, sink = super()._handler(), self

        class Handler(base):  # type: ignore[valid-type,misc]
            def send_response(self, code: int, message: str | None = None) -> None:
                super().send_response(code, message)
                if code in (429, 503) and self.path in sink.retry_after:
                    self.send_header("Retry-After", sink.retry_after[self.path])

        return Handler


@dataclass
class Hooks:
    stack: Stack
    sink: RetryAfterSink
    refused: WebhookSink
    api: FlaskClient


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory, database: Database) -> Iterator[Hooks]:
    """A stack with one webhooks worker (the policy above), an allowlisted receiver on
    127.0.0.2 and a receiver on 127.0.0.1 outside the allowlist."""
    directory = tmp_path_factory.mktemp("retries")
    stack = Stack.start(directory, env=POLICY, database_url=database.fresh_url(directory))
    # the in-process app answers the API here, and vets endpoint URLs as web would
    stack.app.config["WEBHOOK_ALLOWED_NETWORKS"] = json.loads(
        POLICY["FLASK_WEBHOOK_ALLOWED_NETWORKS"]
    )
    sink = RetryAfterSink(directory / "hooks", host="127.0.0.2").start()
    refused = WebhookSink(directory / "refused", host="127.0.0.1").start()
    try:
        stack.worker("webhooks", queues=("webhooks",))
        yield Hooks(stack, sink, refused, authorized(stack.app.test_client()))
    finally:
        sink.stop()
        refused.stop()
        stack.close()


def send(hooks: Hooks, url: str) -> dict[str, Any]:
    """Create an endpoint for `url` and enqueue one delivery to it; return the job."""
    endpoint = hooks.api.post("/webhook-endpoints", json={"url": url})
    assert endpoint.status_code == 201, endpoint.json
    job = hooks.api.post(
        "/jobs/webhook",
        json={"endpoint_id": endpoint.json["id"], "event_type": "test.retry", "payload": {}},
    )
    assert job.status_code == 202, job.json
    return {**job.json, "endpoint_id": endpoint.json["id"]}


def scripted(hooks: Hooks, statuses: list[int], retry_after: str | None = None) -> str:
    """A fresh receiver path that answers `statuses` in order (then 200); its full URL."""
    path = f"/hooks/{next(_paths)}"
    hooks.sink.status_script[path] = list(statuses)
    if retry_after is not None:
        hooks.sink.retry_after[path] = retry_after
    return path


def finished(hooks: Hooks, job: dict[str, Any]) -> dict[str, Any]:
    return wait_until(
        lambda: (s := hooks.api.get(job["status_url"]).json)["ready"] and s,
        timeout=30,
        what=f"job {job['job_id']} finished",
    )


def dead_letter(hooks: Hooks, job_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        items = hooks.api.get("/dead-letters", query_string={"task": "webhooks.deliver"}).json
        return next((d for d in items["items"] if d["task_id"] == job_id), None)

    return wait_until(find, timeout=30, what=f"dead letter of {job_id}")


def delivery(hooks: Hooks, endpoint_id: int) -> dict[str, Any]:
    with hooks.stack.app.app_context():
        row = db.session.scalars(
            sa.select(WebhookDelivery).filter_by(endpoint_id=endpoint_id)
        ).one()
        out = row.to_dict()
        db.session.remove()
    return out


def gaps(calls: list[dict[str, Any]]) -> list[float]:
    times = [c["received_at"] for c in calls]
    return [b - a for a, b in itertools.pairwise(times)]


def test_5xx_is_retried_with_growing_delays_then_delivered_once(
    hooks: Hooks, record_property: pytest.RecordProperty
) -> None:
    path = scripted(hooks, [500, 500])
    job = send(hooks, f"{hooks.sink.url}{path}")
    assert finished(hooks, job)["value"] == {"status": "delivered", "response_status": 200}

    calls = hooks.sink.received(path)
    assert [c["answered"] for c in calls] == [500, 500, 200]
    assert len({c["event_id"] for c in calls}) == 1  # one X-Webhook-Id: receivers can dedupe
    first, second = gaps(calls)
    print(f"500,500,200: gaps {first:.3f}s, {second:.3f}s")
    record_property("summary", f"500, 500, 200: gaps {first:.2f}s, {second:.2f}s, one event id")
    assert STEPS[0] / 2 <= first <= STEPS[0] + SLACK
    assert STEPS[1] / 2 <= second <= STEPS[1] + SLACK
    # equal jitter: the second delay is at least 0.5 s, the first at most 0.5 s; the 10 %
    # allows for the first attempt's own overhead being larger than the second's
    assert second >= first * 0.9
    record = delivery(hooks, job["endpoint_id"])
    assert record["status"] == "delivered" and record["attempts"] == 3


def test_429_waits_for_retry_after(hooks: Hooks, record_property: pytest.RecordProperty) -> None:
    path = scripted(hooks, [429], retry_after="1")
    job = send(hooks, f"{hooks.sink.url}{path}")
    assert finished(hooks, job)["successful"] is True
    calls = hooks.sink.received(path)
    assert [c["answered"] for c in calls] == [429, 200]
    [gap] = gaps(calls)
    print(f"429 Retry-After 1: gap {gap:.3f}s")
    record_property("summary", f"429 with Retry-After 1, then 200: gap {gap:.2f}s")
    assert 1.0 <= gap <= 1.0 + SLACK  # the computed delay would have been at most 0.5 s


def test_4xx_is_dead_lettered_at_once_without_retry(hooks: Hooks) -> None:
    path = scripted(hooks, [400])
    job = send(hooks, f"{hooks.sink.url}{path}")
    assert finished(hooks, job)["state"] == "failure"
    letter = dead_letter(hooks, job["job_id"])
    assert letter["attempts"] == 1
    assert letter["exception"] == "PermanentError: receiver answered HTTP 400"
    assert [c["answered"] for c in hooks.sink.received(path)] == [400]
    assert delivery(hooks, job["endpoint_id"])["status"] == "failed"


def test_exhausted_retries_are_dead_lettered_and_a_redrive_delivers_once(hooks: Hooks) -> None:
    path = scripted(hooks, [500] * 10)
    job = send(hooks, f"{hooks.sink.url}{path}")
    assert finished(hooks, job)["state"] == "failure"
    letter = dead_letter(hooks, job["job_id"])
    assert letter["attempts"] == 4  # the first call and max_retries = 3 retries
    assert letter["exception"] == "TransientError: receiver answered HTTP 500"
    calls = hooks.sink.received(path)
    assert [c["answered"] for c in calls] == [500] * 4
    spaced = gaps(calls)
    print("always 500: gaps " + ", ".join(f"{g:.3f}s" for g in spaced))
    for gap, step in zip(spaced, STEPS, strict=True):
        assert step / 2 <= gap <= step + SLACK
    assert spaced[2] > spaced[0]
    assert delivery(hooks, job["endpoint_id"])["status"] == "failed"  # marked with the dead letter

    hooks.sink.status_script[path] = []  # the receiver recovers: 200 from now on
    redrive = hooks.api.post(f"/dead-letters/{letter['id']}/redrive")
    assert redrive.status_code == 202
    assert finished(hooks, redrive.json)["successful"] is True
    again = hooks.api.post(f"/dead-letters/{letter['id']}/redrive")
    assert again.status_code == 202
    assert again.json["job_id"] == redrive.json["job_id"]
    assert again.headers["Idempotent-Replayed"] == "true"

    calls = hooks.sink.received(path)
    assert [c["answered"] for c in calls] == [500] * 4 + [200]
    assert len({c["event_id"] for c in calls}) == 1
    assert delivery(hooks, job["endpoint_id"])["status"] == "delivered"
    detail = hooks.api.get(f"/dead-letters/{letter['id']}").json
    assert detail["redrive_job_id"] == redrive.json["job_id"]


@pytest.mark.parametrize("host", ["127.0.0.1", "169.254.169.254"])
def test_a_webhook_to_an_internal_address_is_refused_before_any_request(
    hooks: Hooks, host: str
) -> None:
    port = hooks.refused.port if host == "127.0.0.1" else 80
    url = f"http://{host}:{port}/hooks/internal"
    created = hooks.api.post("/webhook-endpoints", json={"url": url})
    assert created.status_code == 422 and created.json["field"] == "url"
    # an endpoint recorded before the rule (or whose name changed since) is refused at delivery
    with hooks.stack.app.app_context():
        endpoint = WebhookEndpoint(url=url, secret="s" * 32)
        db.session.add(endpoint)
        db.session.commit()
        endpoint_id = endpoint.id
        db.session.remove()
    job = hooks.api.post(
        "/jobs/webhook",
        json={"endpoint_id": endpoint_id, "event_type": "test.retry", "payload": {}},
    ).json
    assert finished(hooks, job)["state"] == "failure"
    letter = dead_letter(hooks, job["job_id"])
    assert letter["attempts"] == 1
    assert letter["exception"].startswith(f"EgressRefused: {host}: refused: internal address")
    assert "WEBHOOK_ALLOWED_NETWORKS" in letter["exception"]
    # the receiver on 127.0.0.1 was there and answering, and got nothing
    probe = httpx.post(f"{hooks.refused.url}/hooks/probe", content=b"{}")
    assert probe.status_code == 200
    assert hooks.refused.received("/hooks/internal") == []
