"""Calls to a running stack's HTTP API that several tests make: creating a user, awaiting a job."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx

from harness.processes import wait_until


def new_user(api: httpx.Client, **extra: Any) -> dict[str, Any]:
    """Create a user with a fresh email through `POST /users`; return its JSON body."""
    email = f"user-{uuid4().hex[:10]}@example.com"
    response = api.post("/users", json={"email": email, "name": "Ada Lovelace", **extra})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_job(api: httpx.Client, status_url: str, timeout: float = 30) -> dict[str, Any]:
    """Poll a job's status URL until it is ready; return the last status body."""

    def ready() -> dict[str, Any] | None:
        body = api.get(status_url).json()
        return body if body["ready"] else None

    return wait_until(ready, timeout=timeout, what=f"job {status_url} ready")
