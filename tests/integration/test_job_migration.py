"""Job rows on both databases: migration 0005 gives the rows written before it a state, and
the lifecycle's writes, the relay's query and the listing's cursor work on SQLite and
PostgreSQL alike.

A job is inserted with plain SQL at revision 0004, as the API of that time left it.
PostgreSQL is a throwaway server (harness/postgres.py), with a fresh database per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask

from harness.auth import api_keys_setting, bearer
from harness.postgres import Postgres, empty_database_url, postgres_bindir
from service import create_app
from service.data.db import db, utcnow
from service.data.models import DeadLetter, Job
from service.jobs import lifecycle


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
    """An app on an empty database of its own, migrated to 0004."""
    uri = empty_database_url(server, tmp_path)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": uri,
            "API_KEYS": api_keys_setting(),
            "CELERY": {"broker_url": "redis://127.0.0.1:9/0", "result_backend": None},
        }
    )
    with app.app_context():
        upgrade("0004")
        yield app
        db.session.remove()
        db.engine.dispose()


def upgrade(revision: str) -> None:
    # no session may hold a connection: env.py's advisory lock stays with the one that took it
    db.session.remove()
    flask_migrate.upgrade(revision=revision)
    db.session.remove()


def test_jobs_from_before_0005_read_queued_and_the_lifecycle_moves_new_ones(app: Flask) -> None:
    old = str(uuid4())
    db.session.execute(
        sa.text(
            "INSERT INTO jobs (id, kind, task_name, queue, request_fingerprint, owner, created_at)"
            " VALUES (:id, 'add', 'jobs.add', 'default', '-', 'tests-all', :at)"
        ),
        {"id": old, "at": utcnow().replace(tzinfo=None)},
    )
    db.session.commit()
    upgrade("0005")
    job = db.session.get(Job, old)
    assert job is not None and (job.state, job.attempts, job.queued_at) == ("queued", 0, None)
    db.session.remove()

    ok, bad = str(uuid4()), str(uuid4())
    for job_id in (ok, bad):
        fields = {"kind": "add", "task_name": "jobs.add", "queue": "default", "owner": "tests-all"}
        db.session.add(Job(id=job_id, request_fingerprint="-", state="recorded", **fields))
    db.session.commit()
    db.session.remove()
    lifecycle.started(app, ok)
    lifecycle.succeeded(app, ok, {"sum": 3})
    lifecycle.started(app, ok)  # a redelivery of a finished job changes nothing
    lifecycle.started(app, bad)
    lifecycle.retrying(app, bad, ValueError("once"))
    lifecycle.started(app, bad)
    db.session.add(DeadLetter(task_id=bad, task_name="jobs.add", args=[], kwargs={},
                              exception_type="E", exception_message="m", attempts=2))  # fmt: skip
    db.session.commit()
    lifecycle.failed(app, bad, ValueError("twice"))
    rows = {j.id: j for j in db.session.scalars(sa.select(Job).where(Job.id.in_([ok, bad])))}
    assert rows[ok].state == "succeeded" and rows[ok].attempts == 1
    assert rows[ok].result_summary == {"value": {"sum": 3}}
    assert rows[ok].queued_at is not None and rows[ok].finished_at is not None
    assert rows[bad].state == "dead_lettered" and rows[bad].attempts == 2
    assert rows[bad].last_error == "ValueError: twice"
    db.session.remove()

    client = app.test_client()
    seen, cursor = [], None
    while True:
        query = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        body = client.get("/jobs", query_string=query, headers=bearer()).get_json()
        seen += [item["job_id"] for item in body["items"]]
        if (cursor := body["next_cursor"]) is None:
            break
    assert sorted(seen) == sorted([old, ok, bad]) and len(seen) == 3
    listed = client.get("/jobs", query_string={"state": "failure"}, headers=bearer()).get_json()
    assert [item["job_id"] for item in listed["items"]] == [bad]
