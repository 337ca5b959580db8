"""Outbound TLS contexts: verifying, made once per CA bundle, made again when the bundle changes."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from service.outbound.tls import client_context
from tests.support.tls import CertificateAuthority


def _subjects(context: ssl.SSLContext) -> set[str]:
    return {value for cert in context.get_ca_certs() for rdn in cert["subject"] for _, value in rdn}


def test_a_context_verifies_the_server_and_its_name() -> None:
    context = client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_one_bundle_gives_one_shared_context(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "a", name="first CA")
    first = client_context(str(ca.bundle))
    assert client_context(str(ca.bundle)) is first
    assert _subjects(first) == {"first CA"}
    assert client_context() is client_context()


def test_a_replaced_bundle_is_read_again(tmp_path: Path) -> None:
    """A mounted Secret or ConfigMap is updated by swapping the file: the next call trusts the
    new CA and no longer the old one."""
    bundle = tmp_path / "ca.pem"
    old, new = (CertificateAuthority(tmp_path / n, name=f"{n} CA") for n in ("old", "new"))
    bundle.write_bytes(old.bundle.read_bytes())
    before = client_context(str(bundle))
    replacement = tmp_path / "ca.pem.new"
    replacement.write_bytes(new.bundle.read_bytes())
    os.replace(replacement, bundle)
    after = client_context(str(bundle))
    assert after is not before
    assert _subjects(before) == {"old CA"}
    assert _subjects(after) == {"new CA"}
