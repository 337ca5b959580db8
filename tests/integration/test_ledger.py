"""The idempotency ledger on both databases it supports: SQLite and PostgreSQL.

`run_once` runs inside the app's own task class, called in-process: inside an app context,
committed when it returns, rolled back when it raises, as in a worker. The PostgreSQL server is
a throwaway one (`harness.postgres`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from flask import Flask

from harness.postgres import Postgres, postgres_bindir
from harness.stack import ROOT
from service import create_app
from service.data.db import db
from service.data.models import LedgerEntry, User
from service.reliability.idempotency import DUPLICATE, run_once

RACERS = 8


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    """A migrated app on SQLite, then on PostgreSQL."""
    directory = tmp_path_factory.mktemp(f"ledger-{request.param}")
    server = None
    if request.param == "postgresql":
        server = Postgres(postgres_bindir()).start()
        uri = server.url
    else:
        uri = f"sqlite:///{directory / 'db.sqlite'}"
    application = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": uri,
            "STORAGE_DIR": str(directory / "storage"),
            "CELERY": {"broker_url": "redis://127.0.0.1:9/0", "result_backend": None},
        }
    )
    try:
        with application.app_context():
            flask_migrate.upgrade()
            db.session.remove()
        yield application
    finally:
        with application.app_context():
            db.engine.dispose()
        if server is not None:
            server.stop()


def _run(key: str, task_id: str, body: Callable[[], Any]) -> Any:
    return run_once(key, "tests.ledger", task_id, body)


def in_task(app: Flask, key: str, body: Callable[[], Any], task_id: str = "t") -> Any:
    """`run_once` called through the app's own task class, as a worker calls a task: in an
    app context, committed when it returns, rolled back when it raises."""
    celery_app = app.extensions["celery"]
    if "tests.ledger" not in celery_app.tasks:
        celery_app.task(name="tests.ledger", shared=False)(_run)
    return celery_app.tasks["tests.ledger"](key, task_id, body)


def make_effect(
    key: str, before_return: Callable[[], Any] = lambda: None, keyed_row: bool = False
) -> Callable[[], Any]:
    """A body whose effect is one User row named `key`; with `keyed_row` the row's own unique
    column (the email) carries the key too, as `email_log` rows do."""

    def body() -> dict[str, str]:
        email = f"{key}@example.com" if keyed_row else f"{uuid4().hex}@example.com"
        db.session.add(User(email=email, name=key))
        before_return()
        return {"effect": key}

    return body


def counts(app: Flask, key: str) -> tuple[int, int]:
    """(effect rows, ledger rows) for `key`."""
    with app.app_context():
        effects = db.session.scalar(sa.select(sa.func.count()).where(User.name == key))
        keys = db.session.scalar(sa.select(sa.func.count()).where(LedgerEntry.key == key))
        db.session.remove()
    return int(effects or 0), int(keys or 0)


def test_a_second_run_is_a_no_op_returning_the_first_result(app: Flask) -> None:
    key = f"ledger:{uuid4()}"
    first = in_task(app, key, make_effect(key), task_id="first")
    second = in_task(app, key, make_effect(key), task_id="second")
    assert first == {"effect": key}
    assert second == {"status": DUPLICATE, "key": key, "first_task_id": "first", "result": first}
    assert counts(app, key) == (1, 1)


@pytest.mark.parametrize("keyed_row", [False, True], ids=["plain-row", "keyed-row"])
def test_racing_runs_of_one_key_make_exactly_one_effect(app: Flask, keyed_row: bool) -> None:
    key = f"race-{uuid4()}"
    # every racer has looked the key up and found nothing before any of them records it, so
    # the unique constraint (ON CONFLICT DO NOTHING), not the lookup, decides
    looked_up = threading.Barrier(RACERS, timeout=30)
    results: list[Any] = []
    errors: list[BaseException] = []

    def racer(i: int) -> None:
        try:
            body = make_effect(key, looked_up.wait, keyed_row)
            results.append(in_task(app, key, body, task_id=str(i)))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert counts(app, key) == (1, 1)
    winners = [r for r in results if r == {"effect": key}]
    assert len(winners) == 1
    assert all(r["status"] == DUPLICATE for r in results if r not in winners)
    assert len(results) == RACERS


def test_a_body_that_raises_records_nothing_and_can_run_again(app: Flask) -> None:
    key = f"fails:{uuid4()}"

    def boom() -> None:
        raise RuntimeError("the effect failed half-way")

    with pytest.raises(RuntimeError):
        in_task(app, key, make_effect(key, boom))
    assert counts(app, key) == (0, 0)  # the half-made effect went with the rollback
    assert in_task(app, key, make_effect(key)) == {"effect": key}
    assert counts(app, key) == (1, 1)


def test_concurrent_upgrades_on_postgresql_take_turns(tmp_path: Path) -> None:
    """Pods that start together each run `flask db upgrade` (the chart's init containers)."""
    server = Postgres(postgres_bindir()).start()
    try:
        env = {
            **os.environ,
            "FLASK_SQLALCHEMY_DATABASE_URI": server.url,
            "FLASK_STORAGE_DIR": str(tmp_path / "storage"),
        }
        flask = Path(sys.executable).parent / "flask"
        upgrades = [
            subprocess.Popen(
                [str(flask), "--app", "service.wsgi", "db", "upgrade"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [proc.communicate(timeout=120)[0] for proc in upgrades]
        assert [proc.returncode for proc in upgrades] == [0, 0, 0], outputs
        assert sum(out.count("Running upgrade  -> 0001") for out in outputs) == 1
        engine = sa.create_engine(server.url)
        with engine.connect() as connection:
            head = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
        assert [row[0] for row in head] == [
            ScriptDirectory.from_config(alembic_config()).get_current_head()
        ]
    finally:
        server.stop()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "service" / "data" / "migrations"))
    return config
