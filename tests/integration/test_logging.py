"""Logs correlated by request and task id, in JSON, in web and in the worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from harness.auth import api_keys_setting, authorized
from harness.processes import stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import start_worker
from service import create_app


@pytest.fixture
def json_stack(stack_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Flask, Path]]:
    """A redis of its own, a worker logging JSON, and an app publishing to them."""
    server = RedisServer(tmp_path / "redis").start()
    env = {
        **stack_env,
        "FLASK_CELERY__BROKER_URL": server.url(0),
        "FLASK_CELERY__RESULT_BACKEND": server.url(1),
        "FLASK_LOG_FORMAT": "json",
    }
    log = tmp_path / "worker.log"
    proc, _ = start_worker(env, ("default",), log, concurrency=1)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": env["FLASK_SQLALCHEMY_DATABASE_URI"],
            "STORAGE_DIR": env["FLASK_STORAGE_DIR"],
            "API_KEYS": api_keys_setting(),
            "CELERY": {"broker_url": server.url(0), "result_backend": server.url(1)},
        }
    )
    try:
        yield app, log
    finally:
        stop(proc)
        server.stop()


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_a_job_logs_the_request_id_that_enqueued_it(json_stack: tuple[Flask, Path]) -> None:
    app, log = json_stack
    response = authorized(app.test_client()).post(
        "/jobs/add", json={"a": 2, "b": 3}, headers={"X-Request-ID": "req-0042"}
    )
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "req-0042"
    job_id = response.json["job_id"]

    def task_lines() -> list[dict[str, Any]]:
        return [r for r in json_lines(log) if r["task_id"] == job_id]

    lines = wait_until(task_lines, timeout=20, what=f"a JSON log line of task {job_id}")
    assert {r["request_id"] for r in lines} == {"req-0042"}
    assert any("succeeded" in r["message"] for r in lines)
    assert all(line.startswith("{") for line in log.read_text().splitlines() if "Task " in line)


def test_a_request_without_an_id_gets_one(json_stack: tuple[Flask, Path]) -> None:
    app, _ = json_stack
    given = app.test_client().get("/healthz").headers["X-Request-ID"]
    bad = app.test_client().get("/healthz", headers={"X-Request-ID": "bad id\\n"})
    assert len(given) == 32 and given != bad.headers["X-Request-ID"]
    assert bad.headers["X-Request-ID"] != "bad id\\n"
