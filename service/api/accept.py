"""Answering an enqueue: 202 with the job, or the job already recorded under the caller's key.

Shared by every route that enqueues (the job endpoints, dead-letter re-drives). A client's
`Idempotency-Key` is its own: the same key from two callers makes two jobs.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Response, current_app, jsonify, request, url_for

from ..jobs.enqueue import BrokerUnavailable, IdempotencyConflict, JobRequest, enqueue
from .access import caller
from .errors import ApiError, bad_request

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 190
#: Client keys are stored under this prefix and the caller's id, apart from the keys the API
#: makes itself (`redrive:<id>`), so a client cannot take over one of those or another caller's.
CLIENT_KEY_PREFIX = "client:"


def idempotency_key() -> str | None:
    """The request's `Idempotency-Key` as stored, the caller's own; None when it sent none."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise bad_request(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            field=IDEMPOTENCY_HEADER,
        )
    # a digest keeps the stored key short whatever the caller's id and key lengths
    return f"{CLIENT_KEY_PREFIX}{caller().owner}:{hashlib.sha256(key.encode()).hexdigest()}"


def accept(req: JobRequest, body: Any, key: str | None) -> tuple[Response, int]:
    """Enqueue and answer 202 with the job, or the job already recorded under `key`.

    202 means the job will run: published now, or by the outbox relay when the publish was
    ambiguous. 503 `broker_unavailable` means nothing was sent and nothing was kept.
    """
    try:
        result = enqueue(req, body, key, current_app.extensions["celery"])
    except IdempotencyConflict:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"{IDEMPOTENCY_HEADER} was already used for a different request",
        ) from None
    except BrokerUnavailable:
        raise ApiError(
            503, "broker_unavailable", "the job queue is unreachable; retry later"
        ) from None
    job = result.job
    response = jsonify(
        {"job_id": job.id, "status_url": url_for("jobs.status", job_id=job.id), "kind": job.kind}
    )
    response.headers["Location"] = url_for("jobs.status", job_id=job.id)
    if not result.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 202
