"""Webhook delivery: a signed HTTP POST with a timeout, retried only when retrying can help.

The body is JSON ``{"id", "type", "created_at", "data"}``. Headers carry the event id
(`X-Webhook-Id`, stable across retries, for deduplication at the receiver) and an HMAC
signature (`X-Webhook-Signature`, see `service.signing`). A 2xx marks the delivery delivered;
408/425/429/5xx and network errors retry with backoff (429 honours Retry-After); any other
answer fails the delivery at once.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from celery import Task, shared_task
from flask import current_app

from ..db import db, utcnow
from ..models import WebhookDelivery
from ..reliability.retry import RETRY_POLICY, PermanentError, TransientError, is_transient_status
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
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


@shared_task(name="webhooks.deliver", bind=True, ignore_result=False, **RETRY_POLICY)
def deliver(self: Task, delivery_id: int) -> dict[str, Any]:
    """POST the delivery's event to its endpoint."""
    delivery = load(WebhookDelivery, delivery_id)
    if delivery.status == "delivered":
        return {"status": "already_delivered", "response_status": delivery.response_status}
    body = delivery_body(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": current_app.config["WEBHOOK_USER_AGENT"],
        EVENT_ID_HEADER: delivery.event_id,
        SIGNATURE_HEADER: sign(delivery.endpoint.secret, body),
    }
    delivery.attempts += 1
    # The attempt is counted even if the call below raises, so it is committed first.
    db.session.commit()
    response = httpx.post(
        delivery.endpoint.url,
        content=body,
        headers=headers,
        timeout=float(current_app.config["WEBHOOK_TIMEOUT"]),
        follow_redirects=False,
    )
    delivery.response_status = response.status_code
    if response.is_success:
        delivery.status, delivery.delivered_at = "delivered", utcnow()
        return {"status": "delivered", "response_status": response.status_code}
    if is_transient_status(response.status_code):
        db.session.commit()
        retry_after = _retry_after(response)
        if retry_after is not None:
            raise self.retry(
                countdown=retry_after, exc=TransientError(f"HTTP {response.status_code}")
            )
        raise TransientError(f"receiver answered HTTP {response.status_code}")
    delivery.status = "failed"
    db.session.commit()
    raise PermanentError(f"receiver answered HTTP {response.status_code}")
