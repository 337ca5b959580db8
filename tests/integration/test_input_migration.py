"""Input on both databases: migration 0004 lower-cases the emails written before it (or
stops), and ids at their bound and refused text never reach the database as a server error.

Rows are inserted with plain SQL at revision 0003, as the API of that time could leave them.
PostgreSQL is a throwaway server (harness/postgres.py), with a fresh database per test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask

from harness.auth import api_keys_setting, bearer
from harness.postgres import Postgres, empty_database_url, postgres_bindir
from service import create_app
from service.api.schemas import MAX_ID
from service.data.db import db, utcnow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> Iterator[Postgres | None]:
    """None for SQLite; a PostgreSQL server for the module otherwise."""
    if request.param == "sqlite":
        yield None
        return
    postgres = Postgres(postgres_bindir()).start()
    yield postgres
    postgres.stop()


@pytest.fixture
def app(server: Postgres | None, tmp_path: Path) -> Iterator[Flask]:
    """An app on an empty database of its own, migrated to 0003."""
    uri = empty_database_url(server, tmp_path)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": uri,
            "STORAGE_DIR": str(tmp_path / "storage"),
            "API_KEYS": api_keys_setting(),
            "CELERY": {"broker_url": "redis://127.0.0.1:9/0", "result_backend": None},
        }
    )
    with app.app_context():
        migrate(flask_migrate.upgrade, "0003")
        yield app
        db.session.remove()
        db.engine.dispose()


def migrate(command: Callable[..., None], revision: str = "head") -> None:
    """Run `command` (upgrade, downgrade) with no session holding a connection: env.py's
    advisory lock on PostgreSQL stays with the pooled connection that first took it."""
    db.session.remove()
    command(revision=revision)
    db.session.remove()


def insert_users(*emails: str) -> None:
    db.session.execute(
        sa.text(
            "INSERT INTO users (email, name, plan, created_at) VALUES (:email, 'x', 'trial', :at)"
        ),
        [{"email": email, "at": utcnow().replace(tzinfo=None)} for email in emails],
    )
    db.session.commit()


def emails() -> list[str]:
    return list(db.session.scalars(sa.text("SELECT email FROM users ORDER BY id")))


def revision() -> str:
    return str(db.session.scalar(sa.text("SELECT version_num FROM alembic_version")))


def test_upgrade_lower_cases_every_email_and_the_api_then_finds_them_in_any_case(
    app: Flask,
) -> None:
    insert_users("Ada@Example.COM", "bob@example.com", "CAROL@EXAMPLE.ORG")
    migrate(flask_migrate.upgrade, "0004")
    assert revision() == "0004"
    assert emails() == ["ada@example.com", "bob@example.com", "carol@example.org"]

    client = app.test_client()
    response = client.post(
        "/users", json={"email": "ADA@example.com", "name": "Ada"}, headers=bearer()
    )
    assert response.status_code == 409
    migrate(flask_migrate.downgrade, "0003")
    assert revision() == "0003"


@pytest.mark.usefixtures("app")
def test_upgrade_stops_on_emails_that_differ_only_in_case_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    insert_users(
        "Ada@Example.COM", "bob@example.com", "ada@example.com", "Bob@Example.com", "x@y.z"
    )
    with pytest.raises(SystemExit):  # flask-migrate logs the error and exits
        migrate(flask_migrate.upgrade, "0004")
    db.session.remove()
    assert "emails differ only in case: ada@example.com, bob@example.com; give" in caplog.text
    assert revision() == "0003"
    assert emails() == [
        "Ada@Example.COM",
        "bob@example.com",
        "ada@example.com",
        "Bob@Example.com",
        "x@y.z",
    ]


def test_ids_at_their_bound_and_refused_text_are_never_a_server_error(app: Flask) -> None:
    migrate(flask_migrate.upgrade)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = bearer()["Authorization"]
    for path in ("users", "invoices", "exports", "webhook-deliveries", "dead-letters"):
        assert client.get(f"/{path}/{MAX_ID}").status_code == 404
        assert client.get(f"/{path}/{MAX_ID + 1}").status_code == 404
    assert client.get(f"/dead-letters?before={MAX_ID}").json["items"] == []
    assert client.get("/dead-letters?task=a%00b").status_code == 400
    line = {"description": "x", "quantity": 1, "unit_price_cents": 1}
    for path, body, field in (
        ("/invoices", {"user_id": MAX_ID, "lines": [line]}, "user_id"),
        ("/jobs/welcome-email", {"user_id": MAX_ID}, "user_id"),
        ("/users", {"email": "nul@example.com", "name": "a\x00b"}, "name"),
    ):
        response = client.post(path, json=body)
        assert (response.status_code, response.json["field"]) == (400, field)
    name = "Łukasz Żółć Αλέξανδρος Дмитрий 山田 😀"
    user = client.post("/users", json={"email": "unicode@example.com", "name": name}).json
    assert client.get(f"/users/{user['id']}").json["name"] == name
