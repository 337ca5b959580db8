"""Integration test fixtures: the session stack's sinks, environment, workers and gunicorn.

Everything runs as real processes on free loopback ports, on the session redis-server of
tests/conftest.py, and keeps its files under pytest's tmp dirs. The session-scoped stack is
shared; tests keep apart by creating their own rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.sinks import SmtpSink, WebhookSink
from harness.auth import bearer
from harness.processes import free_port, stop
from harness.redis_server import RedisServer
from harness.stack import (
    migrate,
    stack_environment,
    stack_flask_app,
    start_web,
    start_worker,
)
from service.routing import WORKER_GROUPS


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
def stack_env(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    smtp_sink: SmtpSink,
    webhook_sink: WebhookSink,
) -> dict[str, str]:
    """The environment every process of the stack gets, with a migrated SQLite database."""
    state = tmp_path_factory.mktemp("state")
    extra = {
        "FLASK_SMTP_HOST": "127.0.0.1",
        "FLASK_SMTP_PORT": str(smtp_sink.port),
        "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus"),
        "PYTHONUNBUFFERED": "1",
        # loopback is refused by default: allow the webhook receiver's port there, nothing else
        "FLASK_WEBHOOK_ALLOWED_NETWORKS": json.dumps([f"127.0.0.1:{webhook_sink.port}"]),
    }
    # databases 0 and 1 of the session redis-server are the locally run chart's (tests/chart):
    # the stack's own keep its queues, results, worker pings and beat lock apart from them
    env = stack_environment(state, redis_server.url(2), redis_server.url(3), extra)
    (state / "prometheus").mkdir()
    migrate(env)
    return env


@pytest.fixture(scope="session")
def workers(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """One real worker per worker group of the routing table; group name -> node name."""
    logs = tmp_path_factory.mktemp("worker-logs")
    started = {
        group: start_worker(stack_env, queues, logs / f"{group}.log")
        for group, queues in WORKER_GROUPS.items()
    }
    yield {group: node for group, (_, node) in started.items()}
    for proc, _ in started.values():
        stop(proc, timeout=30)


@pytest.fixture(scope="session")
def web(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gunicorn serving the app on a free port; yields its base URL."""
    log = tmp_path_factory.mktemp("web") / "gunicorn.log"
    proc, url = start_web(stack_env, log)
    yield url
    stop(proc)


@pytest.fixture
def api(web: str, workers: dict[str, str]) -> Iterator[httpx.Client]:
    """An HTTP client for the running stack (web and every worker group up)."""
    with httpx.Client(base_url=web, timeout=10, headers=bearer()) as client:
        yield client


@pytest.fixture
def stack_app(stack_env: dict[str, str]) -> Any:
    """A Flask app on the stack's database, for setting up and inspecting rows directly."""
    return stack_flask_app(stack_env)
