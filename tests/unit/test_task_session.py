"""The app-context Task class: each task's database session commits or rolls back, alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from celery import shared_task
from flask import Flask, current_app

from service import create_app
from service.data.db import db
from service.data.models import User


@shared_task(name="tests.add_user")
def add_user(email: str, fail: bool) -> str:
    db.session.add(User(email=email, name=current_app.name))
    db.session.flush()
    if fail:
        raise ValueError("boom")
    return email


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp_path / "storage"),
            "CELERY": {"task_always_eager": True},
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
    yield app


def emails(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(User.email)))


def test_a_task_that_returns_commits_its_rows(app: Flask) -> None:
    result = app.extensions["celery"].tasks["tests.add_user"].apply(("ok@example.com", False))
    assert result.get() == "ok@example.com"
    assert emails(app) == ["ok@example.com"]


def test_a_task_that_raises_rolls_back_and_leaks_nothing_into_the_next(app: Flask) -> None:
    task = app.extensions["celery"].tasks["tests.add_user"]
    failed = task.apply(("bad@example.com", True))
    assert failed.failed()
    task.apply(("next@example.com", False))
    assert emails(app) == ["next@example.com"]


def test_a_task_body_runs_inside_the_app_context(app: Flask) -> None:
    task = app.extensions["celery"].tasks["tests.add_user"]
    task.apply(("ctx@example.com", False))
    with app.app_context():
        assert db.session.execute(sa.select(User.name)).scalar_one() == app.name
