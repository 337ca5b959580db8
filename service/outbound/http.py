"""A webhook's HTTP POST: bounded in time and size, classified for retries.

The answer's status is all a delivery needs: its body is read up to a limit and dropped, and a
receiver cannot hold the worker past the deadline. Redirects are not followed. 408/425/429/5xx
raise `TransientError` (with the receiver's `Retry-After`, when it gave one in seconds); network
errors are httpx's transport errors, which the retry classification also treats as transient.
"""

from __future__ import annotations

import time

import httpx

from ..reliability.retry import TransientError, is_transient_status


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, max_response_bytes: int
) -> int:
    """POST `body` to `url` and return the answer's status."""
    started = time.monotonic()
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        with client.stream("POST", url, content=body, headers=headers) as response:
            received = 0
            for chunk in response.iter_raw():
                received += len(chunk)
                if received > max_response_bytes or time.monotonic() - started > timeout:
                    break  # the status is all we need; never let a receiver hold us
            if is_transient_status(response.status_code):
                raise TransientError(
                    f"receiver answered HTTP {response.status_code}", _retry_after(response)
                )
            return response.status_code
