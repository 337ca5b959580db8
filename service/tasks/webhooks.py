"""Webhook delivery: a signed HTTP POST with bounded time and size, retried only when it helps.

The body is JSON ``{"id", "type", "created_at", "data"}``. Headers carry the event id
(`X-Webhook-Id`, the same on every attempt, for deduplication at the receiver) and an HMAC
signature (`X-Webhook-Signature`, see `service.outbound.signing`). The URL's host is resolved
once per attempt and every address must be public or allowed (`service.outbound.egress`); the
POST goes to exactly those addresses, with the receiver's certificate verified for the URL's host
(`service.outbound.http`). A 2xx marks the delivery delivered; 408/425/429/5xx and network errors
retry with backoff (429 and 503 honour Retry-After); any other answer, redirects included, fails
the delivery at once.

A receiver cannot get an HTTP call exactly once: if a worker dies after the receiver answered
but before the delivery is committed, the event is sent again. The event id makes that
duplicate recognisable.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app

from ..data.db import db, utcnow
from ..data.models import WebhookDelivery
from ..outbound import http
from ..outbound.egress import Resolver, resolve_host, vet_url
from ..outbound.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, sign
from ..reliability.retry import PermanentError
from ..reliability.task import job_task
from .rows import load


def delivery_body(delivery: WebhookDelivery) -> bytes:
    """The exact bytes that are signed and sent."""
    event = {
        "id": delivery.event_id,
        "type": delivery.event_type,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def _mark_failed(delivery_id: int) -> None:
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is not None:
        delivery.status = "failed"


@job_task(
    "webhooks.deliver",
    key=lambda delivery_id: f"webhook:{delivery_id}",
    on_dead_letter=_mark_failed,
)
def deliver(delivery_id: int) -> dict[str, Any]:
    """POST the delivery's event to its endpoint."""
    return attempt(delivery_id)


def attempt(delivery_id: int, resolve: Resolver = resolve_host) -> dict[str, Any]:
    """One delivery attempt, the task's body: vet the endpoint's URL with `resolve` (the
    system's resolver; tests bring their own), POST to the vetted addresses, record the answer."""
    cfg = current_app.config
    delivery = load(WebhookDelivery, delivery_id)
    destination = vet_url(delivery.endpoint.url, cfg["WEBHOOK_ALLOWED_NETWORKS"], resolve)
    body = delivery_body(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": current_app.config["WEBHOOK_USER_AGENT"],
        EVENT_ID_HEADER: delivery.event_id,
        SIGNATURE_HEADER: sign(delivery.endpoint.secret, body),
    }
    delivery.attempts += 1
    db.session.commit()  # the attempt counts even when the call below raises
    status = http.post(
        destination,
        body,
        headers,
        float(cfg["WEBHOOK_TIMEOUT"]),
        int(cfg["WEBHOOK_MAX_RESPONSE_BYTES"]),
        cfg["WEBHOOK_CA_FILE"],
    )
    delivery.response_status = status
    if 200 <= status < 300:
        delivery.status, delivery.delivered_at = "delivered", utcnow()
        return {"status": "delivered", "response_status": status}
    db.session.commit()
    raise PermanentError(f"receiver answered HTTP {status}")
