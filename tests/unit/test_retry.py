"""The shared retry policy: what is retried, and how long each retry waits."""

from __future__ import annotations

import random
import smtplib

import httpx
import pytest

from service.reliability.retry import (
    PermanentError,
    RetryPolicy,
    TransientError,
    is_transient,
    is_transient_status,
)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (httpx.ConnectTimeout("slow"), True),
        (smtplib.SMTPServerDisconnected(), True),
        (smtplib.SMTPResponseException(451, b"try later"), True),
        (smtplib.SMTPResponseException(550, b"no such user"), False),
        (TransientError("503"), True),
        (PermanentError("gone"), False),
        (ValueError("bad"), False),
        (KeyError("x"), False),
    ],
)
def test_classification(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


@pytest.mark.parametrize(
    ("status", "transient"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (404, False), (410, False)],
)
def test_http_status_classification(status: int, transient: bool) -> None:
    assert is_transient_status(status) is transient


def test_delays_grow_stay_within_their_step_and_are_capped() -> None:
    policy, rng = RetryPolicy(max_retries=10, backoff_base=2, backoff_max=60), random.Random(7)
    delays = [policy.delay(n, rng=rng) for n in range(8)]
    for n, delay in enumerate(delays):
        step = min(60, 2 * 2**n)
        assert step / 2 <= delay <= step
    assert all(a <= b for a, b in zip(delays[:4], delays[1:5], strict=True))
    assert max(delays) <= 60


def test_jitter_spreads_retries_of_the_same_attempt() -> None:
    policy = RetryPolicy(max_retries=6, backoff_base=8, backoff_max=300)
    assert len({round(policy.delay(3), 6) for _ in range(20)}) > 10


def test_retry_after_wins_but_is_capped() -> None:
    policy = RetryPolicy(max_retries=6, backoff_base=2, backoff_max=120)
    assert policy.delay(0, TransientError("429", retry_after=30)) == 30
    assert policy.delay(0, TransientError("429", retry_after=3600)) == 120
