"""Webhook signatures: what a receiver must accept and what it must refuse."""

from __future__ import annotations

from service.outbound.signing import sign, verify

BODY = b'{"id":"e1","type":"invoice.paid"}'


def test_a_fresh_signature_verifies() -> None:
    assert verify("secret", BODY, sign("secret", BODY))


def test_another_secret_or_body_does_not_verify() -> None:
    header = sign("secret", BODY)
    assert not verify("other", BODY, header)
    assert not verify("secret", BODY + b" ", header)


def test_an_old_signature_is_refused() -> None:
    header = sign("secret", BODY, timestamp=1_000)
    assert not verify("secret", BODY, header, now=1_000 + 301)
    assert verify("secret", BODY, header, now=1_000 + 299)


def test_a_malformed_header_is_refused() -> None:
    assert not verify("secret", BODY, "garbage")
    assert not verify("secret", BODY, "t=abc,v1=00")
