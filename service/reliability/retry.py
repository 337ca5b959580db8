"""One classification of failures, shared by every task.

Transient failures (the network, a timeout, a 5xx or 429 answer) are retried with exponential
backoff, a cap and full jitter, a bounded number of times. Everything else is permanent and
fails at once: retrying a 400 or a missing row only delays the same answer.
"""

from __future__ import annotations

import smtplib
import socket
from typing import Any

import httpx
import sqlalchemy.exc


class TransientError(Exception):
    """A failure worth retrying: the same call may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the other side asked us to wait (HTTP Retry-After), if it said.
        self.retry_after = retry_after


class PermanentError(Exception):
    """A failure that retrying cannot fix: bad input, a missing row, a 4xx answer."""


#: Exceptions that mean "try again later".
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    socket.timeout,
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    httpx.TransportError,
    sqlalchemy.exc.OperationalError,
)

#: `@shared_task(**RETRY_POLICY)`: autoretry on transient errors only, with jittered backoff.
RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": TRANSIENT_EXCEPTIONS,
    "dont_autoretry_for": (PermanentError,),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 6,
}


def is_transient_status(status_code: int) -> bool:
    """HTTP answers worth retrying: 408, 425, 429 and every 5xx."""
    return status_code in (408, 425, 429) or status_code >= 500
