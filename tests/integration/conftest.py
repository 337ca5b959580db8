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

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.sinks import SmtpSink, WebhookSink
from harness.auth import bearer
from harness.postgres import Database, Postgres, postgres_bindir
from harness.processes import free_port, stop
from harness.redis_server import RedisServer
from harness.stack import (
    migrate,
    stack_environment,
    stack_flask_app,
    start_web,
    start_worker,
)
from service.data.db import db
from service.routing import WORKER_GROUPS

#: The databases a test marked `databases` may name; the chart's default is PostgreSQL.
DATABASES = ("sqlite", "postgresql")
#: The session redis-server's databases (broker, result backend) of each database's stack:
#: 0 and 1 are the locally run chart's (tests/chart).
REDIS_DATABASES = {"sqlite": (2, 3), "postgresql": (4, 5)}


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


@dataclass
class SessionStack:
    """One database's session stack: its environment, and its processes once asked for."""

    env: dict[str, str]
    directory: Path
    workers: dict[str, str] | None = None
    web: str | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


@dataclass
class SessionStacks:
    """The session stacks, one per database a test asked for, each built when first needed."""

    tmp: pytest.TempPathFactory
    redis: RedisServer
    smtp: SmtpSink
    hooks: WebhookSink
    stacks: dict[str, SessionStack] = field(default_factory=dict)

    def get(self, database: Database) -> SessionStack:
        if database.name not in self.stacks:
            state = self.tmp.mktemp(f"state-{database.name}")
            extra = {
                "FLASK_SMTP_HOST": "127.0.0.1",
                "FLASK_SMTP_PORT": str(self.smtp.port),
                "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus"),
                "PYTHONUNBUFFERED": "1",
                # loopback is refused by default: allow the webhook receiver's port there only
                "FLASK_WEBHOOK_ALLOWED_NETWORKS": json.dumps([f"127.0.0.1:{self.hooks.port}"]),
            }
            broker, results = REDIS_DATABASES[database.name]
            env = stack_environment(
                state,
                self.redis.url(broker),
                self.redis.url(results),
                extra,
                database.fresh_url(state),
            )
            (state / "prometheus").mkdir()
            migrate(env)
            self.stacks[database.name] = SessionStack(env, state)
        return self.stacks[database.name]

    def workers(self, database: Database) -> dict[str, str]:
        """One real worker per worker group of the routing table; group name -> node name."""
        stack = self.get(database)
        if stack.workers is None:
            logs = self.tmp.mktemp(f"worker-logs-{database.name}")
            started = {
                group: start_worker(stack.env, queues, logs / f"{group}.log")
                for group, queues in WORKER_GROUPS.items()
            }
            stack.procs += [proc for proc, _ in started.values()]
            stack.workers = {group: node for group, (_, node) in started.items()}
        return stack.workers

    def web(self, database: Database) -> str:
        """gunicorn serving the app on a free port; its base URL."""
        stack = self.get(database)
        if stack.web is None:
            log = self.tmp.mktemp(f"web-{database.name}") / "gunicorn.log"
            proc, stack.web = start_web(stack.env, log)
            stack.procs.append(proc)
        return stack.web

    def close(self) -> None:
        for stack in self.stacks.values():
            for proc in stack.procs:
                stop(proc, timeout=30)


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
