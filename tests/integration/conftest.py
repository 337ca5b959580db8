"""Real processes for integration tests: redis-server, Celery workers, beat, gunicorn.

Everything listens on free loopback ports and keeps its files under pytest's tmp dirs. The
session-scoped stack is shared; tests keep apart by creating their own rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import redis

from devstack.sinks import SmtpSink, WebhookSink
from service import create_app
from service.routing import WORKER_GROUPS
from tests.support.processes import free_port, stop, wait_until

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def redis_server_bin() -> str:
    """redis-server from REDIS_SERVER_BIN or PATH (`make test` installs it when missing)."""
    exe = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
    if not exe:
        pytest.fail("redis-server not found: run `make test`, which installs it")
    return exe


class RedisServer:
    """A redis-server process on a free loopback port, data in `directory`."""

    def __init__(self, directory: Path, appendonly: bool = False) -> None:
        self.directory, self.appendonly = directory, appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        cmd = [
            redis_server_bin(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(client.ping, timeout=10, what=f"redis-server on {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throwaway redis-server for the whole session, no persistence."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


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
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, smtp_sink: SmtpSink
) -> dict[str, str]:
    """The environment every process of the stack gets, with a migrated SQLite database."""
    state = tmp_path_factory.mktemp("state")
    env = {
        **os.environ,
        "FLASK_CELERY__BROKER_URL": redis_server.url(0),
        "FLASK_CELERY__RESULT_BACKEND": redis_server.url(1),
        "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{state / 'db.sqlite'}",
        "FLASK_STORAGE_DIR": str(state / "storage"),
        "FLASK_SMTP_HOST": "127.0.0.1",
        "FLASK_SMTP_PORT": str(smtp_sink.port),
        "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus"),
        "PYTHONUNBUFFERED": "1",
        # the webhook receivers of these tests listen on loopback, which is refused by default
        "FLASK_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    }
    (state / "prometheus").mkdir()
    subprocess.run(
        [BIN / "flask", "--app", "service.wsgi", "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session with stdout and stderr appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_worker(
    env: dict[str, str],
    queues: tuple[str, ...],
    log: Path,
    concurrency: int = 2,
    extra: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[bytes], str]:
    """A real `celery worker` on `queues`, ready (answers a ping) when this returns."""
    node = f"test-{uuid4().hex[:8]}@localhost"
    cmd = [
        str(BIN / "celery"),
        "-A",
        "service.make_celery",
        "worker",
        "--queues",
        ",".join(queues),
        "--hostname",
        node,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-mingle",
        "--without-gossip",
        *extra,
    ]
    proc = spawn(cmd, env, log)
    celery_app = celery_client(env)
    wait_until(
        lambda: proc.poll() is None and celery_app.control.ping(destination=[node], timeout=0.5),
        timeout=60,
        what=f"celery worker {node} (log: {log})",
    )
    return proc, node


def stack_flask_app(env: dict[str, str]) -> Any:
    """A Flask app configured like the stack's processes (database, storage, broker)."""
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": env["FLASK_SQLALCHEMY_DATABASE_URI"],
            "STORAGE_DIR": env["FLASK_STORAGE_DIR"],
            "CELERY": {
                "broker_url": env["FLASK_CELERY__BROKER_URL"],
                "result_backend": env["FLASK_CELERY__RESULT_BACKEND"],
            },
        }
    )


def celery_client(env: dict[str, str]) -> Any:
    """The Celery app of `stack_flask_app`, for control commands and results."""
    return stack_flask_app(env).extensions["celery"]


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
    port = free_port()
    log = tmp_path_factory.mktemp("web") / "gunicorn.log"
    cmd = [
        str(BIN / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "service.wsgi:app",
    ]
    proc = spawn(cmd, stack_env, log)
    url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: httpx.get(f"{url}/readyz", timeout=1).status_code == 200,
        timeout=30,
        what=f"gunicorn /readyz (log: {log})",
    )
    yield url
    stop(proc)


@pytest.fixture
def api(web: str, workers: dict[str, str]) -> Iterator[httpx.Client]:
    """An HTTP client for the running stack (web and every worker group up)."""
    with httpx.Client(base_url=web, timeout=10) as client:
        yield client


@pytest.fixture
def stack_app(stack_env: dict[str, str]) -> Any:
    """A Flask app on the stack's database, for setting up and inspecting rows directly."""
    return stack_flask_app(stack_env)


def wait_for_job(api: httpx.Client, status_url: str, timeout: float = 30) -> dict[str, Any]:
    """Poll a job's status URL until it is ready; return the last status body."""

    def ready() -> dict[str, Any] | None:
        body = api.get(status_url).json()
        return body if body["ready"] else None

    return wait_until(ready, timeout=timeout, what=f"job {status_url} ready")
