"""Webhook delivery: a signed HTTP POST with bounded time and size, retried only when it helps.

The body is JSON ``{"id", "type", "created_at", "data"}``. Headers carry the event id
(`X-Webhook-Id`, the same on every attempt, for deduplication at the receiver) and an HMAC
signature (`X-Webhook-Signature`, see `service.signing`). The URL must resolve to a public
address (`service.egress`). A 2xx marks the delivery delivered; 408/425/429/5xx and network
errors retry with backoff (429 and 503 honour Retry-After); any other answer fails the delivery
at once.

A receiver cannot get an HTTP call exactly once: if a worker dies after the receiver answered
but before the delivery is committed, the event is sent again. The event id makes that
duplicate recognisable.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from flask import current_app

from ..db import db, utcnow
from ..egress import check_url, parse_networks
from ..models import WebhookDelivery
from ..reliability.retry import PermanentError, TransientError, is_transient_status
from ..reliability.task import job_task
from ..signing import EVENT_ID_HEADER, SIGNATURE_HEADER, sign
from .common import load


def delivery_body(delivery: WebhookDelivery) -> bytes:
    """The exact bytes that are signed and sent."""
    event = {
        "id": delivery.event_id,
        "type": delivery.event_type,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST and return the status; the answer's body is read up to a limit, then dropped."""
    cfg = current_app.config
    limit, deadline = int(cfg["WEBHOOK_MAX_RESPONSE_BYTES"]), float(cfg["WEBHOOK_TIMEOUT"])
    started = time.monotonic()
    with httpx.Client(timeout=deadline, follow_redirects=False) as client:
        with client.stream("POST", url, content=body, headers=headers) as response:
            received = 0
            for chunk in response.iter_raw():
                received += len(chunk)
                if received > limit or time.monotonic() - started > deadline:
                    break  # the status is all we need; never let a receiver hold us
            if is_transient_status(response.status_code):
                raise TransientError(
                    f"receiver answered HTTP {response.status_code}", _retry_after(response)
                )
            return response.status_code


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
    delivery = load(WebhookDelivery, delivery_id)
    url = delivery.endpoint.url
    check_url(url, parse_networks(current_app.config["WEBHOOK_ALLOWED_NETWORKS"]))
    body = delivery_body(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": current_app.config["WEBHOOK_USER_AGENT"],
        EVENT_ID_HEADER: delivery.event_id,
        SIGNATURE_HEADER: sign(delivery.endpoint.secret, body),
    }
    delivery.attempts += 1
    db.session.commit()  # the attempt counts even when the call below raises
    status = _post(url, body, headers)
    delivery.response_status = status
    if 200 <= status < 300:
        delivery.status, delivery.delivered_at = "delivered", utcnow()
        return {"status": "delivered", "response_status": status}
    db.session.commit()
    raise PermanentError(f"receiver answered HTTP {status}")
