"""Input is bounded where the API accepts it: ids, amounts, times, text, emails and payloads.

Each case is a value that used to be accepted and then broke something downstream (a 500, a
dead letter, a mail header, a row PostgreSQL refuses); each must now be a 4xx naming what is
wrong. The app runs on a SQLite file with a broker nobody listens on: nothing here may enqueue.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from harness.auth import api_keys_setting, bearer
from harness.processes import free_port
from service import create_app
from service.api.schemas import MAX_ID, MAX_INT
from service.data.db import db
from service.data.models import Invoice, Job, User, WebhookEndpoint


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One app for the module: tests that add rows use emails of their own."""
    tmp_path = tmp_path_factory.mktemp("app")
    unused = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp_path / "storage"),
            "API_KEYS": api_keys_setting(),
            "CELERY": {"broker_url": unused, "result_backend": unused},
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
        db.session.add_all(User(email=f"user{n}@example.com", name=f"User {n}") for n in (1, 2, 3))
        db.session.commit()
    yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = bearer()["Authorization"]
    return client


def count(app: Flask, model: Any) -> int:
    with app.app_context():
        return int(db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


@pytest.fixture
def added(app: Flask) -> Callable[[], int]:
    """How many rows the test has added to the tables the API writes."""
    tables = (User, Invoice, Job, WebhookEndpoint)
    before = sum(count(app, table) for table in tables)
    return lambda: sum(count(app, table) for table in tables) - before


def line(**overrides: Any) -> dict[str, Any]:
    return {"description": "Consulting", "quantity": 1, "unit_price_cents": 100, **overrides}


def id_routes(app: Flask) -> list[tuple[str, str]]:
    """(method, path template) of every route with an id in its path."""
    return sorted(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if "<int:" in rule.rule
        for method in rule.methods - {"HEAD", "OPTIONS"}
    )


def test_every_id_route_is_found_for_a_small_id(app: Flask, client: FlaskClient) -> None:
    """The control for the next test: these routes do match an id in range."""
    routes = id_routes(app)
    assert len(routes) >= 8
    for method, template in routes:
        path = re.sub(r"<int:\w+>", "1", template)
        response = client.open(path, method=method)
        assert response.status_code != 404 or "does not exist" in response.json["message"], path


@pytest.mark.parametrize(
    "raw_id",
    ["0", str(MAX_ID + 1), str(2**53), str(2**63), "9" * 5000, "٣", "²", "-1", "1.0", "1e3"],
)
def test_an_id_out_of_range_or_not_in_ascii_digits_is_404_on_every_id_route(
    app: Flask, client: FlaskClient, raw_id: str
) -> None:
    for method, template in id_routes(app):
        path = re.sub(r"<int:\w+>", raw_id, template)
        response = client.open(path, method=method)
        assert response.status_code == 404, (method, path, response.status_code)
        assert response.json["error"] == "not_found"


def test_the_largest_id_is_looked_up_and_arabic_digits_are_not_user_3(client: FlaskClient) -> None:
    assert client.get("/users/3").json["id"] == 3
    assert client.get("/users/٣").status_code == 404
    response = client.get(f"/users/{MAX_ID}")
    assert response.status_code == 404
    assert response.json["message"] == f"user {MAX_ID} does not exist"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/jobs/welcome-email", {"user_id": MAX_ID + 1}, "user_id"),
        ("/jobs/invoice-pdf", {"invoice_id": MAX_INT}, "invoice_id"),
        ("/jobs/welcome-email", {"user_id": 2**63}, "user_id"),
        ("/jobs/invoice-pdf", {"invoice_id": 2**64}, "invoice_id"),
        ("/jobs/webhook", {"endpoint_id": 2**63, "event_type": "a", "payload": {}}, "endpoint_id"),
        ("/jobs/add", {"a": -(2**63), "b": 1}, "a"),
        ("/invoices", {"user_id": 2**63, "lines": [line()]}, "user_id"),
    ],
)
def test_a_body_id_out_of_range_is_400_naming_it(
    added: Callable[[], int], client: FlaskClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400
    assert response.json["field"] == field
    assert re.search(r"(less|greater) than or equal to", response.json["message"])
    assert added() == 0


@pytest.mark.parametrize(
    ("lines", "field", "message"),
    [
        ([line(quantity=1_000_001)], "lines.0.quantity", "less than or equal to 1000000"),
        ([line(unit_price_cents=10**12 + 1)], "lines.0.unit_price_cents", "less than or equal"),
        ([line(quantity=10_000, unit_price_cents=10**12)], "lines", f"at most {MAX_INT} cents"),
        (
            [line(quantity=1_000_000, unit_price_cents=10**12)] * 100,
            "lines",
            f"at most {MAX_INT} cents",
        ),
        ([line(description="a\x00b")], "lines.0.description", "must not contain control"),
        ([line(description="a\nb")], "lines.0.description", "must not contain control"),
    ],
)
def test_an_invoice_beyond_its_bounds_is_400_naming_the_field(
    added: Callable[[], int],
    client: FlaskClient,
    lines: list[dict[str, Any]],
    field: str,
    message: str,
) -> None:
    response = client.post("/invoices", json={"user_id": 1, "lines": lines})
    assert response.status_code == 400
    assert response.json["field"] == field
    assert message in response.json["message"]
    assert added() == 0


def test_the_largest_invoice_total_is_accepted_and_kept_exactly(client: FlaskClient) -> None:
    rest = MAX_INT - 9007 * 10**12
    lines = [line(quantity=9007, unit_price_cents=10**12), line(unit_price_cents=rest)]
    response = client.post("/invoices", json={"user_id": 1, "lines": lines})
    assert response.status_code == 201, response.json
    assert response.json["total_cents"] == MAX_INT
    assert client.get(f"/invoices/{response.json['id']}").json["total_cents"] == MAX_INT


@pytest.mark.parametrize(
    ("eta", "message"),
    [
        ("0001-01-01T00:00:00+14:00", "eta: is out of range"),
        ("9999-12-31T23:59:59-14:00", "eta: is out of range"),
        ("1999-12-31T23:59:59Z", "eta: must not be before 2000-01-01T00:00:00Z"),
        ("2030-01-01T00:00:00", "eta: must be a date-time with a zone"),
        ("2030-01-01 00:00:00Z", "eta: must be a date-time with a zone"),
        ("2030-02-30T00:00:00Z", "eta: 2030-02-30T00:00:00Z is not a date-time"),
        ("9999-12-31T00:00:00Z", "eta: at most"),
    ],
)
def test_an_eta_outside_its_window_is_400_naming_eta(
    added: Callable[[], int], client: FlaskClient, eta: str, message: str
) -> None:
    response = client.post("/jobs/add", json={"a": 1, "b": 2, "eta": eta})
    assert response.status_code == 400
    assert response.json["field"] == "eta"
    assert response.json["message"].startswith(message)
    assert added() == 0


CONTROL = ["\x00", "\r\n", "\n", "\t", "\x1b", "\x7f", "\x85", "\u2028"]


@pytest.mark.parametrize("char", CONTROL)
@pytest.mark.parametrize(
    ("path", "field", "body"),
    [
        ("/users", "name", {"email": "new@example.com", "name": "Ada{c}Bcc: x@example.com"}),
        ("/users", "email", {"email": "new{c}@example.com", "name": "Ada"}),
        ("/invoices", "lines.0.description", {"user_id": 1, "lines": [line(description="a{c}")]}),
        (
            "/webhook-endpoints",
            "secret",
            {"url": "http://example.com/", "secret": "s" * 16 + "{c}"},
        ),
    ],
)
def test_control_characters_in_text_are_400_naming_the_field(
    added: Callable[[], int],
    client: FlaskClient,
    path: str,
    field: str,
    body: dict[str, Any],
    char: str,
) -> None:
    filled = {k: v.replace("{c}", char) if isinstance(v, str) else v for k, v in body.items()}
    if "lines" in body:
        filled["lines"] = [line(description=f"a{char}")]
    response = client.post(path, json=filled)
    assert response.status_code == 400, response.json
    assert response.json["field"] == field
    assert added() == 0


def test_names_in_any_script_are_taken_as_written(client: FlaskClient) -> None:
    name = "Łukasz Żółć · Αλέξανδρος · Дмитрий · 山田太郎 😀"
    response = client.post("/users", json={"email": "lukasz@example.com", "name": name})
    assert response.status_code == 201
    assert client.get(f"/users/{response.json['id']}").json["name"] == name


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("a,b@example.com", "email: must be one email address"),
        ("a@b@example.com", "email: must be one email address"),
        ("Ada <ada@example.com>", "email: must be one email address"),
        ("ada@localhost", "email: must be one email address"),
        ("ada@example", "email: must be one email address"),
        ("ada..l@example.com", "email: must be one email address"),
        ("łukasz@example.com", "email: must be one email address"),
        ("ada@example.test", "email: The part after the @-sign is a special-use"),
        ("ada@ab--c.com", "email: An email address cannot have two letters followed by two dashes"),
        ("a" * 65 + "@example.com", "email: the part before the @-sign must be at most 64"),
        ("a@" + "b" * 250 + ".com", "email: String should have at most 254 characters"),
    ],
)
def test_anything_but_one_email_address_is_400(
    added: Callable[[], int], client: FlaskClient, email: str, message: str
) -> None:
    response = client.post("/users", json={"email": email, "name": "Ada"})
    assert response.status_code == 400
    assert response.json["field"] == "email"
    assert response.json["message"].startswith(message), response.json["message"]
    assert added() == 0


def test_an_email_is_the_same_user_in_any_case(
    added: Callable[[], int], client: FlaskClient
) -> None:
    created = client.post("/users", json={"email": "Ada.Lovelace@Example.COM", "name": "Ada"})
    assert created.status_code == 201
    assert created.json["email"] == "ada.lovelace@example.com"
    for email in ("ada.lovelace@example.com", "ADA.LOVELACE@EXAMPLE.COM", "USER1@example.com"):
        response = client.post("/users", json={"email": email, "name": "Ada"})
        assert response.status_code == 409, email
        assert response.json["field"] == "email"
    assert added() == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"x": 1e400}', "payload: numbers must be finite, payload.x is inf"),
        (b'{"x": [1, -1e999]}', "payload: numbers must be finite, payload.x[1] is -inf"),
        (b'{"x": {"y": NaN}}', "payload: numbers must be finite, payload.x.y is nan"),
        (b'{"x": Infinity}', "payload: numbers must be finite, payload.x is inf"),
        (b'{"x": "a\\u0000"}', "payload: strings must not contain NUL, payload.x does"),
        (b'{"a\\u0000": 1}', "payload: keys must not contain NUL, one in payload does"),
    ],
)
def test_a_payload_json_cannot_carry_is_400(
    added: Callable[[], int], client: FlaskClient, raw: bytes, message: str
) -> None:
    body = b'{"endpoint_id": 1, "event_type": "a.b", "payload": ' + raw + b"}"
    response = client.post("/jobs/webhook", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["field"] == "payload"
    assert response.json["message"] == message
    assert added() == 0


@pytest.mark.parametrize(
    "query", ["limit=%C2%B2", "limit=%D9%A3", "before=%C2%B2", "limit=1e2", "limit=" + "9" * 5000]
)
def test_a_query_number_in_other_than_ascii_digits_is_400(client: FlaskClient, query: str) -> None:
    response = client.get(f"/dead-letters?{query}")
    assert response.status_code == 400
    assert response.json["field"] == query.split("=")[0]


def test_control_characters_in_a_query_are_400_but_only_after_authentication(
    app: Flask, client: FlaskClient
) -> None:
    assert client.get("/dead-letters?task=expire").status_code == 200
    response = client.get("/dead-letters?task=a%00b")
    assert response.status_code == 400
    assert response.json["field"] == "task"
    assert app.test_client().get("/dead-letters?task=a%00b").status_code == 401


@pytest.mark.parametrize(
    "job_id", ["nope", "x" * 300, "a%00b", "5F0C0000-0000-4000-8000-000000000000", "1"]
)
def test_a_job_id_this_api_never_issues_is_404(client: FlaskClient, job_id: str) -> None:
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/users/1", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", "/users", {"POST", "OPTIONS"}),
        ("GET", "/invoices", {"POST", "OPTIONS"}),
        ("GET", "/jobs/add", {"POST", "OPTIONS"}),
        ("POST", "/healthz", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_a_405_says_which_methods_are_allowed(
    client: FlaskClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) == allowed
