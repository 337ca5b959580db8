"""Mail over TLS is verified: STARTTLS and implicit TLS against real SMTP servers.

The servers (aiosmtpd on loopback) present certificates from a CA made for this module
(tests/support/tls.py), issued for `localhost`, the name the app connects to. The system's CAs
do not know that CA, so a mail goes out only when `SMTP_CA_FILE` names it, and only to a server
whose certificate is for the configured host.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask

from harness.processes import free_port
from service import create_app
from service.config import ConfigError
from service.outbound.mail import send_mail
from tests.support.tls import CertificateAuthority, ServerCertificate

HOST = "127.0.0.1"


class Inbox:
    """An aiosmtpd handler that keeps every mail it accepts."""

    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.mails.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"


class SmtpServer:
    """An SMTP server on loopback: plain, STARTTLS (required) or implicit TLS."""

    def __init__(self, mode: str, certificate: ServerCertificate | None = None) -> None:
        self.inbox, self.port = Inbox(), free_port()
        options: dict[str, Any] = {}
        if mode == "starttls":
            assert certificate is not None
            options = {"tls_context": certificate.context(), "require_starttls": True}
        elif mode == "ssl":
            assert certificate is not None
            options = {"ssl_context": certificate.context()}
        self.controller = Controller(self.inbox, hostname=HOST, port=self.port, **options)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    tmp = tmp_path_factory.mktemp("mail")
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp / "storage"),
            "SMTP_HOST": "localhost",
            "SMTP_TIMEOUT": 5,
        }
    )


@pytest.fixture
def config(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The app's config for one test: set what the test needs, undone after it."""
    for name, value in (("SMTP_TLS", None), ("SMTP_STARTTLS", False), ("SMTP_CA_FILE", None)):
        monkeypatch.setitem(app.config, name, value)
    yield app.config


def mail(app: Flask, server: SmtpServer, subject: str) -> None:
    with app.app_context():
        app.config["SMTP_PORT"] = server.port
        send_mail("user@example.com", subject, "Hello.\n", f"<{subject}@example.com>")


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_mail_goes_out_only_to_a_server_whose_certificate_verifies(
    app: Flask, config: dict[str, Any], ca: CertificateAuthority, mode: str
) -> None:
    config["SMTP_TLS"] = mode
    with SmtpServer(mode, ca.issue("localhost")) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
            mail(app, server, f"untrusted-{mode}")
        assert server.inbox.mails == []

        config["SMTP_CA_FILE"] = str(ca.bundle)
        mail(app, server, f"trusted-{mode}")
        assert [m["Subject"] for m in server.inbox.mails] == [f"trusted-{mode}"]


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_a_certificate_for_another_host_is_refused(
    app: Flask, config: dict[str, Any], ca: CertificateAuthority, mode: str
) -> None:
    config["SMTP_TLS"], config["SMTP_CA_FILE"] = mode, str(ca.bundle)
    # valid for the address connected to, but not for the configured host name
    with SmtpServer(mode, ca.issue("mail.example.com", HOST)) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            mail(app, server, f"mismatch-{mode}")
        assert server.inbox.mails == []


def test_the_older_starttls_switch_still_upgrades_and_verifies(
    app: Flask, config: dict[str, Any], ca: CertificateAuthority
) -> None:
    config["SMTP_STARTTLS"] = True
    with SmtpServer("starttls", ca.issue("localhost")) as server:  # refuses mail before TLS
        with pytest.raises(ssl.SSLCertVerificationError):
            mail(app, server, "legacy-untrusted")
        config["SMTP_CA_FILE"] = str(ca.bundle)
        mail(app, server, "legacy-trusted")
        assert [m["Subject"] for m in server.inbox.mails] == ["legacy-trusted"]


def test_starttls_never_falls_back_to_plain_text(app: Flask, config: dict[str, Any]) -> None:
    config["SMTP_TLS"] = "starttls"
    with SmtpServer("none") as server:  # offers no STARTTLS
        with pytest.raises(smtplib.SMTPNotSupportedError, match="STARTTLS"):
            mail(app, server, "downgraded")
        assert server.inbox.mails == []


def test_plain_smtp_stays_available_for_a_local_relay(app: Flask, config: dict[str, Any]) -> None:
    config["SMTP_TLS"] = "none"
    with SmtpServer("none") as server:
        mail(app, server, "local")
        assert [m["Subject"] for m in server.inbox.mails] == ["local"]


def test_an_unknown_tls_mode_stops_the_app_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "STORAGE_DIR": str(tmp_path / "storage"),
    }
    monkeypatch.setenv("FLASK_SMTP_TLS", "tls")
    with pytest.raises(ConfigError, match="FLASK_SMTP_TLS='tls': expected one of none, starttls"):
        create_app(overrides)
