"""Log records correlated by request id (web) and task id (workers), as text or JSON lines.

A request takes its id from `X-Request-ID` or gets a new one, and answers with it. Jobs carry
it to the worker in the message headers, so a task's log lines name the request that enqueued
it. `LOG_FORMAT=json` writes one JSON object per line, for log collectors. Workers and beat keep
this format because `service.signals` answers Celery's `setup_logging` with `configure`.

Every handler installed here, and gunicorn's own (its error and access logs, in a gunicorn
worker), first takes the secrets out of each record (`service.redact`): the message, the
exception text with its traceback, and the stack. httpx logs each request at INFO with its full
URL ("HTTP Request: POST https://user:pw@host/hook?token=... 200"); it stays at INFO, redacted,
because which receiver answered what is what an operator looks for when a webhook fails.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from celery import current_task
from flask import Flask, Response, g, has_request_context, request

from ..redact import redact

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def current_ids() -> dict[str, str | None]:
    """The request id and task id of the code running now, where there are any."""
    task = current_task._get_current_object() if current_task else None
    request_id = g.get("request_id") if has_request_context() else None
    if task is not None and task.request.id:
        request_id = request_id or (task.request.get("request_id") if task.request else None)
    return {"request_id": request_id, "task_id": task.request.id if task is not None else None}


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_ids().items():
            setattr(record, key, value or "-")
        return True


class RedactSecrets(logging.Filter):
    """Replaces a record's message, exception text and stack with their redacted text.

    The record is changed in place: a handler's formatter then reads the redacted text (the
    exception text is cached on the record, as `logging.Formatter` caches it itself).
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not print its raw arguments
            message = f"{record.msg} % {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "task_id": getattr(record, "task_id", "-"),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s task=%(task_id)s] %(message)s"


def configure(fmt: str, level: int | str) -> None:
    """Send the root logger to stderr in `fmt` ("text" or "json")."""
    handler = logging.StreamHandler()
    handler.addFilter(_Context())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # gunicorn's loggers do not propagate to the root: its access log carries query strings
    for name in ("gunicorn.error", "gunicorn.access"):
        for other in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactSecrets) for f in other.filters):
                other.addFilter(RedactSecrets())


def carry_request_id(headers: dict[str, Any] | None) -> None:
    """Put the current request's id into a message's headers (in the publishing process)."""
    if headers is not None and has_request_context():
        headers.setdefault("request_id", g.get("request_id"))


def init_app(app: Flask) -> None:
    """Configure logging and give every request an id."""
    configure(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])

    @app.before_request
    def _assign_request_id() -> None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        return response
