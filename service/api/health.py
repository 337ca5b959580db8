"""Probes: `/healthz` says the process serves requests, `/readyz` that its dependencies answer.

`/readyz` is unauthenticated, so a failed check answers only the exception's type: its text
names hosts and addresses, and may carry a password from a URL. The detail goes to the log, at
WARNING, where the log filter redacts it.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify

from ..data.db import db
from .access import public

bp = Blueprint("health", __name__)

log = logging.getLogger(__name__)


@bp.get("/healthz")
@public
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@public
def readyz() -> tuple[Response, int]:
    """200 when both the broker and the database answer; 503 naming the one that does not."""
    checks = {"broker": _check_broker(), "database": _check_database()}
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ok" if ready else "unavailable", "checks": checks}), (
        200 if ready else 503
    )


def _check_broker() -> str:
    celery_app = current_app.extensions["celery"]
    try:
        # A fresh connection: the pooled one may report success on a broken socket.
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            conn.default_channel  # noqa: B018 - opening a channel is the round trip we test
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return _not_ready("broker", exc)


def _check_database() -> str:
    try:
        db.session.execute(sa.text("SELECT 1"))
        return "ok"
    except Exception as exc:  # noqa: BLE001 - as above
        db.session.rollback()
        return _not_ready("database", exc)


def _not_ready(dependency: str, exc: Exception) -> str:
    """Log why `dependency` is not ready; answer only the exception's type."""
    log.warning("readiness: the %s does not answer: %s: %s", dependency, type(exc).__name__, exc)
    return f"error: {type(exc).__name__}"
