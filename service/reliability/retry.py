"""One classification of failures, and one retry policy, shared by every task.

Transient failures (the network, a timeout, a 408/425/429/5xx answer, and the project's own
infrastructure: the broker, the result store or the database briefly unreachable) are retried
with capped exponential backoff and "equal" jitter (each delay is drawn from the upper half of its
step, so delays grow while retries still spread out), a bounded number of times; a `Retry-After`
the other side sent wins over the computed delay.
Everything else is permanent and fails at once: retrying a 400 or a missing row only delays the
same answer. The numbers come from the app config (`RETRY_*`), read when a task fails, so a worker
group can run with its own policy.
"""

from __future__ import annotations

import random
import smtplib
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc


class TransientError(Exception):
    """A failure worth retrying: the same call may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the other side asked us to wait (HTTP Retry-After), if it said.
        self.retry_after = retry_after


class PermanentError(Exception):
    """A failure that retrying cannot fix: bad input, a missing row, a 4xx answer."""


#: What the broker or the result store (Redis, or another broker through kombu) raises when it
#: cannot be reached or does not answer in time. Publishing (the API, a sub-task, a retry),
#: `update_state` and the result store all end in one of these.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)

#: What SQLAlchemy raises when the database cannot be reached, drops the connection, or the
#: pool has no connection to give in time. `OperationalError` also covers SQLite's "database is
#: locked"; any other DBAPI error whose connection was found dead counts too (`is_database_error`).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
)

#: Exceptions that mean "try again later", besides the infrastructure's own.
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    socket.timeout,
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    httpx.TransportError,
)


def _unwrapped(exc: BaseException) -> BaseException:
    # Celery's Redis result store subscribes to the job's result channel before publishing;
    # when it cannot reconnect it raises RuntimeError caused by the connection error.
    if isinstance(exc, RuntimeError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def is_broker_error(exc: BaseException) -> bool:
    """True when `exc` means Redis (broker or result store) could not be reached."""
    return isinstance(_unwrapped(exc), BROKER_ERRORS)


def is_database_error(exc: BaseException) -> bool:
    """True when `exc` means the database could not be reached or dropped the connection."""
    exc = _unwrapped(exc)
    if isinstance(exc, DATABASE_ERRORS):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and bool(exc.connection_invalidated)


def is_transient(exc: BaseException) -> bool:
    """True when retrying `exc` may help."""
    if isinstance(exc, PermanentError):
        return False
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500  # 4xx SMTP replies are temporary by definition
    return isinstance(exc, TRANSIENT_EXCEPTIONS) or is_broker_error(exc) or is_database_error(exc)


def is_transient_status(status_code: int) -> bool:
    """HTTP answers worth retrying: 408, 425, 429 and every 5xx."""
    return status_code in (408, 425, 429) or status_code >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried (defaults: the `RETRY_*`
    settings in `service.config`)."""

    #: Retries after the first attempt; the task fails (and is dead-lettered) after that.
    max_retries: int
    #: Delay before the first retry, doubled for each one after.
    backoff_base: float
    #: No delay is longer than this.
    backoff_max: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RetryPolicy:
        """The policy the app's `RETRY_*` settings describe."""
        return cls(
            max_retries=int(config["RETRY_MAX_RETRIES"]),
            backoff_base=float(config["RETRY_BACKOFF_BASE"]),
            backoff_max=float(config["RETRY_BACKOFF_MAX"]),
        )

    def delay(
        self, retries: int, exc: BaseException | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number `retries + 1`: drawn from [step/2, step] with
        step = base * 2**retries capped at `backoff_max`, or the peer's Retry-After (capped
        too) when it gave one."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.backoff_max)
        step = min(self.backoff_max, self.backoff_base * (2**retries))
        return (rng or random).uniform(step / 2, step)
