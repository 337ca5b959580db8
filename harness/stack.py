"""The service's own processes as tests and benchmarks start them: environment, workers, app.

Every process of a stack gets the same environment (broker, result backend, a database: SQLite under
one directory, or one on a PostgreSQL server; file storage under that directory), logs to a file of
its own and runs in its own session, so that a test can stop or kill it together with its children.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx

from harness.auth import api_keys_env, api_keys_setting
from harness.processes import free_port, wait_until
from service import create_app

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
#: Worker arguments that load the test-only tasks (`tests.sleep`, `tests.effect`).
INCLUDE_TEST_TASKS = ("--include", "harness.tasks")


def stack_environment(
    state: Path,
    broker_url: str,
    result_backend: str,
    extra: dict[str, str] | None = None,
    database_url: str | None = None,
) -> dict[str, str]:
    """This process' environment plus the broker, the result backend, the database (a SQLite
    file under `state` unless `database_url` names another) and file storage under `state`;
    `extra` adds to (or overrides) all of it."""
    return {
        **os.environ,
        "FLASK_CELERY__BROKER_URL": broker_url,
        "FLASK_CELERY__RESULT_BACKEND": result_backend,
        "FLASK_SQLALCHEMY_DATABASE_URI": database_url or f"sqlite:///{state / 'db.sqlite'}",
        "FLASK_STORAGE_DIR": str(state / "storage"),
        "FLASK_API_KEYS": api_keys_env(),
        # several workers share a machine: none serves metrics unless a test gives it a port
        "FLASK_WORKER_METRICS_PORT": "0",
        **(extra or {}),
    }


def migrate(env: dict[str, str]) -> None:
    """Bring the database of `env` to the newest migration, as `flask db upgrade`."""
    subprocess.run(
        [BIN / "flask", "--app", "service.wsgi", "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )


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


def start_web(
    env: dict[str, str], log: Path, workers: int = 2, ready: str = "/readyz"
) -> tuple[subprocess.Popen[bytes], str]:
    """gunicorn serving the app as in production (with its metrics hooks) on a free port;
    returns the process and its base URL once `ready` answers 200."""
    port = free_port()
    hooks = ("--config", "python:service.gunicorn_conf")
    cmd = [str(BIN / "gunicorn"), *hooks, "--bind", f"127.0.0.1:{port}",
           "--workers", str(workers), "service.wsgi:app"]  # fmt: skip
    proc = spawn(cmd, env, log)
    url = f"http://127.0.0.1:{port}"
    wait_until(  # a generous bound: a loaded machine takes long to import the app thrice
        lambda: proc.poll() is None and httpx.get(f"{url}{ready}", timeout=1).status_code == 200,
        timeout=60,
        what=f"gunicorn {ready} (log: {log})",
    )
    return proc, url


def stack_flask_app(env: dict[str, str]) -> Any:
    """A Flask app configured like the stack's processes (database, storage, broker)."""
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": env["FLASK_SQLALCHEMY_DATABASE_URI"],
            "STORAGE_DIR": env["FLASK_STORAGE_DIR"],
            "API_KEYS": api_keys_setting(),
            "CELERY": {
                "broker_url": env["FLASK_CELERY__BROKER_URL"],
                "result_backend": env["FLASK_CELERY__RESULT_BACKEND"],
            },
        }
    )


def celery_client(env: dict[str, str]) -> Any:
    """The Celery app of `stack_flask_app`, for control commands and results."""
    return stack_flask_app(env).extensions["celery"]
