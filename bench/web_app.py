"""The service's web app plus three comparison endpoints, for `bench.enqueue` only (never shipped).

    gunicorn --config python:service.gunicorn_conf ... bench.web_app:app

`POST /bench/lpush` LPUSHes the bytes of a real `jobs.add` message (read once from the file
named by `BENCH_LPUSH_MESSAGE`, which `bench.enqueue` captures from the broker) onto the task's
queue: the least a publishing endpoint can do. `POST /bench/apply-async` publishes the same
task with plain `apply_async` (no job row, no probe): what bare Celery costs in the same app.
`GET /bench/hello` answers a constant: the cost of the app itself. All three are public, so they
skip the API key, and run every other hook the app runs (request id, metrics, logging), as
`POST /jobs/add` does.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import redis
from flask import Flask, Response

from service import create_app
from service.api.access import public
from service.routing import queue_for
from service.tasks.examples import add_together

MESSAGE_ENV = "BENCH_LPUSH_MESSAGE"
TASK = "jobs.add"


@cache
def _broker(url: str) -> redis.Redis:
    """One client (and its connection pool) per gunicorn worker, made after the fork."""
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


@cache
def _message() -> bytes:
    return Path(os.environ[MESSAGE_ENV]).read_bytes()


def build() -> Flask:
    """`create_app()` with the three comparison endpoints."""
    flask_app = create_app()
    broker_url = flask_app.config["CELERY"]["broker_url"]
    queue = queue_for(TASK)

    @public
    def lpush() -> tuple[Response, int]:
        _broker(broker_url).lpush(queue, _message())
        return Response('{"queued": true}', mimetype="application/json"), 202

    @public
    def apply_async() -> tuple[Response, int]:
        add_together.apply_async((2, 3), ignore_result=True)
        return Response('{"queued": true}', mimetype="application/json"), 202

    @public
    def hello() -> Response:
        return Response("hello", mimetype="text/plain")

    flask_app.add_url_rule("/bench/lpush", "bench_lpush", lpush, methods=["POST"])
    flask_app.add_url_rule("/bench/apply-async", "bench_apply_async", apply_async, methods=["POST"])
    flask_app.add_url_rule("/bench/hello", "bench_hello", hello)
    return flask_app


app = build()
