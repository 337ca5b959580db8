"""Bad requests and broker outages: a precise error, and nothing enqueued or half-written.

The app here publishes to a Redis database that no worker consumes, so every message the API
would publish stays in its queue's list where the test can count it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from harness.auth import api_keys_setting, authorized
from harness.redis_server import RedisServer
from service import create_app
from service.data.db import db
from service.data.models import Export, Job, User, WebhookDelivery, WebhookEndpoint
from service.routing import QUEUES

IDLE_DB = 5


def make_app(tmp_path: Path, broker_url: str) -> Flask:
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp_path / "storage"),
            "API_KEYS": api_keys_setting(),
            "CELERY": {"broker_url": broker_url, "result_backend": broker_url},
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
        user = User(email="known@example.com", name="Known")
        db.session.add_all([user, WebhookEndpoint(url="http://127.0.0.1:9/x", secret="s" * 32)])
        db.session.commit()
    return app


@pytest.fixture
def idle_app(tmp_path: Path, redis_server: RedisServer) -> Iterator[Flask]:
    broker = redis.Redis.from_url(redis_server.url(IDLE_DB))
    broker.flushdb()
    yield make_app(tmp_path, redis_server.url(IDLE_DB))
    broker.flushdb()


@pytest.fixture
def client(idle_app: Flask) -> FlaskClient:
    return authorized(idle_app.test_client())


def queued(redis_server: RedisServer) -> int:
    broker = redis.Redis.from_url(redis_server.url(IDLE_DB))
    return sum(int(broker.llen(q)) for q in QUEUES)


def rows(app: Flask, model: Any) -> int:
    with app.app_context():
        return int(db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def test_a_valid_request_is_what_lands_in_redis(
    client: FlaskClient, idle_app: Flask, redis_server: RedisServer
) -> None:
    """The control for the tests below: the counting does see a published job."""
    assert client.post("/jobs/add", json={"a": 1, "b": 2}).status_code == 202
    assert queued(redis_server) == 1
    assert rows(idle_app, Job) == 1


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/jobs/add", {"a": 1}, "b", "b: field required"),
        ("/jobs/add", {"a": "1", "b": 2}, "a", "a: Input should be a valid integer"),
        ("/jobs/add", {"a": 1.5, "b": 2}, "a", "a: Input should be a valid integer"),
        ("/jobs/add", {"a": True, "b": 2}, "a", "a: Input should be a valid integer"),
        ("/jobs/add", {"a": 1, "b": 2, "c": 3}, "c", "c: unknown field"),
        (
            "/jobs/add",
            {"a": 1, "b": 2, "countdown": -1},
            "countdown",
            "countdown: Input should be greater than or equal to 0",
        ),
        (
            "/jobs/add",
            {"a": 1, "b": 2, "countdown": 5, "eta": "2030-01-01T00:00:00Z"},
            None,
            "give countdown or eta, not both",
        ),
        (
            "/jobs/add",
            {"a": 1, "b": 2, "eta": "2030-01-01T00:00:00"},
            "eta",
            "eta: must be a date-time with a zone",
        ),
        (
            "/jobs/add",
            {"a": 1, "b": 2, "eta": "0001-01-01T00:00:00+14:00"},
            "eta",
            "eta: is out of range",
        ),
        (
            "/jobs/add",
            {"a": 9007199254740992, "b": 2},
            "a",
            "a: Input should be less than or equal to 9007199254740991",
        ),
        (
            "/jobs/welcome-email",
            {"user_id": 2**63},
            "user_id",
            "user_id: Input should be less than or equal to 2147483647",
        ),
        (
            "/jobs/webhook",
            {"endpoint_id": 1, "event_type": "a.b", "payload": {"x": [float("inf")]}},
            "payload",
            "payload: numbers must be finite, payload.x[0] is inf",
        ),
        (
            "/jobs/webhook",
            {"endpoint_id": 1, "event_type": "a.b", "payload": {"x": "a\x00b"}},
            "payload",
            "payload: strings must not contain NUL",
        ),
        ("/jobs/welcome-email", {"user_id": 999}, "user_id", "user_id: no user with id 999"),
        (
            "/jobs/welcome-email",
            {"user_id": 0},
            "user_id",
            "user_id: Input should be greater than or equal to 1",
        ),
        ("/jobs/invoice-pdf", {"invoice_id": 7}, "invoice_id", "invoice_id: no invoice with id 7"),
        (
            "/jobs/export",
            {"table": "secrets"},
            "table",
            "table: Input should be 'users', 'invoices', 'email_log' or 'webhook_deliveries'",
        ),
        (
            "/jobs/webhook",
            {"endpoint_id": 1, "event_type": "Bad Type!", "payload": {}},
            "event_type",
            "event_type: String should match pattern",
        ),
        (
            "/jobs/webhook",
            {"endpoint_id": 1, "event_type": "a.b", "payload": []},
            "payload",
            "payload: Input should be an object",
        ),
        (
            "/jobs/periodic",
            {"task": "rm_rf"},
            "task",
            "task: Input should be 'expire_trials' or 'queue_trial_reminders'",
        ),
    ],
)
def test_invalid_fields_are_400_naming_the_field_and_nothing_is_enqueued(
    client: FlaskClient,
    idle_app: Flask,
    redis_server: RedisServer,
    path: str,
    body: dict[str, Any],
    field: str | None,
    message: str,
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert response.json.get("field") == field
    assert message in response.json["message"]
    assert queued(redis_server) == 0
    assert rows(idle_app, Job) == rows(idle_app, Export) == rows(idle_app, WebhookDelivery) == 0


@pytest.mark.parametrize(
    ("data", "content_type", "status", "message"),
    [
        (b'{"a": 1,', "application/json", 400, "body is not valid JSON"),
        (b"[1, 2]", "application/json", 400, "body must be a JSON object"),
        (b"", "application/json", 400, "body is not valid JSON"),
        (b"a=1&b=2", "application/x-www-form-urlencoded", 415, "Content-Type: application/json"),
        (
            b'{"a": 1, "b": 2, "pad": "' + b"x" * 70_000 + b'"}',
            "application/json",
            413,
            "larger than",
        ),
    ],
)
def test_malformed_bodies_are_rejected_and_nothing_is_enqueued(
    client: FlaskClient,
    idle_app: Flask,
    redis_server: RedisServer,
    data: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    response = client.post("/jobs/add", data=data, content_type=content_type)
    assert response.status_code == status
    assert message in response.json["message"]
    assert queued(redis_server) == 0 and rows(idle_app, Job) == 0


def test_a_bad_idempotency_key_is_400(client: FlaskClient, redis_server: RedisServer) -> None:
    response = client.post(
        "/jobs/add", json={"a": 1, "b": 2}, headers={"Idempotency-Key": "x" * 191}
    )
    assert response.status_code == 400
    assert response.json["field"] == "Idempotency-Key"
    assert queued(redis_server) == 0


def test_broker_down_is_503_leaves_no_rows_and_recovers(tmp_path: Path) -> None:
    broker = RedisServer(tmp_path / "redis").start()
    app = make_app(tmp_path, broker.url())
    client = authorized(app.test_client())
    assert client.post("/jobs/add", json={"a": 1, "b": 2}).status_code == 202
    broker.stop()

    for path, body in (
        ("/jobs/add", {"a": 1, "b": 2}),
        ("/jobs/export", {"table": "users"}),
        ("/jobs/webhook", {"endpoint_id": 1, "event_type": "a.b", "payload": {}}),
    ):
        response = client.post(path, json=body, headers={"Idempotency-Key": f"k-{path}"})
        assert response.status_code == 503, response.json
        assert response.json["error"] == "broker_unavailable"
    assert rows(app, Job) == 1
    assert rows(app, Export) == rows(app, WebhookDelivery) == 0
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["broker"].startswith("error")
    assert ready.json["checks"]["database"] == "ok"

    broker.start()  # same port: the app reconnects on its own
    try:
        response = client.post(
            "/jobs/add", json={"a": 1, "b": 2}, headers={"Idempotency-Key": "k-/jobs/add"}
        )
        assert response.status_code == 202
        assert redis.Redis.from_url(broker.url()).llen("default") == 1
        assert client.get("/readyz").status_code == 200
    finally:
        broker.stop()
