"""Integration test fixtures: the stack's sinks, environment, workers and gunicorn, per database.

Everything runs as real processes on free loopback ports, on the session redis-server of
tests/conftest.py, and keeps its files under pytest's tmp dirs. The session stack of each
database is shared; tests keep apart by creating their own rows.

A test runs on SQLite unless it (or its module, through `pytestmark`) carries
`@pytest.mark.databases("sqlite", "postgresql")`: then it runs once per database named, as
`test_x[sqlite]` and `test_x[postgresql]`, and every stack fixture (`stack_env`, `workers`,
`web`, `api`, `stack_app`, and a module's own `Stack` built from `database.fresh_url`) is on
that database. A pytest worker starts its PostgreSQL server (harness/postgres.py) the first
time one of its tests asks for PostgreSQL, and gives every stack a new database on it.

A test whose property does not involve the database can keep the suite's time down with
`databases("sqlite", "postgresql", default=("sqlite",))`: it runs on the `default` ones, and on
every one it names when TEST_DATABASES=all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.sinks import SmtpSink, WebhookSink
from harness.auth import bearer
from harness.postgres import Database, Postgres, postgres_bindir
from harness.processes import free_port
from harness.redis_server import RedisServer
from harness.stack import (
    stack_flask_app,
)
from service.data.db import db
from tests.support.session_stacks import DATABASES, SessionStacks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "databases(*names, default=names): run the test once on each database named (sqlite, "
        "postgresql), or on `default` unless TEST_DATABASES=all; unmarked tests run on SQLite",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("databases")
    if marker is None or "database" not in metafunc.fixturenames:
        return
    names = marker.args
    if os.environ.get("TEST_DATABASES") != "all":
        names = marker.kwargs.get("default", names)
    unknown = set(names) - set(DATABASES)
    assert not unknown, f"unknown databases {unknown}: name some of {DATABASES}"
    # module scope: a module's stack fixtures are built once per database, its tests grouped
    metafunc.parametrize("database", names, indirect=True, scope="module")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """This pytest worker's PostgreSQL server, started when a test first needs it."""
    server = Postgres(postgres_bindir()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def database(request: pytest.FixtureRequest) -> Database:
    """The database the module's stacks run on (`databases` marker; SQLite if unmarked)."""
    name = getattr(request, "param", "sqlite")
    if name == "sqlite":
        return Database(name)
    return Database(name, lambda: request.getfixturevalue("postgres_server"))


@pytest.fixture(scope="session")
def smtp_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpSink]:
    """An SMTP server that keeps every mail it receives as a file."""
    sink = SmtpSink(tmp_path_factory.mktemp("mail"), port=free_port()).start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def webhook_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookSink]:
    """An HTTP receiver that records every webhook and checks its signature."""
    sink = WebhookSink(tmp_path_factory.mktemp("hooks")).start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def session_stacks(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    smtp_sink: SmtpSink,
    webhook_sink: WebhookSink,
) -> Iterator[SessionStacks]:
    stacks = SessionStacks(tmp_path_factory, redis_server, smtp_sink, webhook_sink)
    yield stacks
    stacks.close()


@pytest.fixture(scope="module")
def stack_env(session_stacks: SessionStacks, database: Database) -> dict[str, str]:
    """The environment every process of the stack gets, with a migrated database."""
    return session_stacks.get(database).env


@pytest.fixture(scope="module")
def workers(
    session_stacks: SessionStacks, database: Database, stack_env: dict[str, str]
) -> dict[str, str]:
    """One real worker per worker group of the routing table; group name -> node name."""
    return session_stacks.workers(database)


@pytest.fixture(scope="module")
def web(session_stacks: SessionStacks, database: Database, stack_env: dict[str, str]) -> str:
    """gunicorn serving the app on a free port; its base URL."""
    return session_stacks.web(database)


@pytest.fixture
def api(web: str, workers: dict[str, str]) -> Iterator[httpx.Client]:
    """An HTTP client for the running stack (web and every worker group up)."""
    with httpx.Client(base_url=web, timeout=10, headers=bearer()) as client:
        yield client


@pytest.fixture
def stack_app(stack_env: dict[str, str]) -> Iterator[Any]:
    """A Flask app on the stack's database, for setting up and inspecting rows directly."""
    app = stack_flask_app(stack_env)
    yield app
    with app.app_context():
        db.engine.dispose()
