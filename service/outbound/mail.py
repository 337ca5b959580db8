"""Outgoing mail over SMTP, configured by the `SMTP_*` and `MAIL_FROM` settings.

`SMTP_TLS` says how the connection is protected: `none` (a local relay or sink), `starttls`
(a plain connection upgraded before anything else is said, usually port 587; a server that does
not offer STARTTLS is an error, never a silent plain-text session) or `ssl` (TLS from the first
byte, usually port 465). The older `SMTP_STARTTLS=true` means `starttls` when `SMTP_TLS` is
unset. Either way the server's certificate is verified for `SMTP_HOST`, against the system's CAs
or `SMTP_CA_FILE`; a certificate that does not verify fails the mail for good (see
`service.outbound.tls`).
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from flask import current_app

from .tls import client_context


def tls_mode(config: Mapping[str, Any]) -> str:
    """`SMTP_TLS`, or what the older `SMTP_STARTTLS` says when it is unset."""
    mode = config.get("SMTP_TLS")
    if mode is None:
        return "starttls" if config.get("SMTP_STARTTLS") else "none"
    return str(mode)


def connect(config: Mapping[str, Any]) -> smtplib.SMTP:
    """An SMTP session with the configured server, TLS set up (and verified) as configured."""
    host, port, timeout = config["SMTP_HOST"], int(config["SMTP_PORT"]), config["SMTP_TIMEOUT"]
    mode = tls_mode(config)
    if mode == "ssl":
        return smtplib.SMTP_SSL(
            host, port, timeout=timeout, context=client_context(config["SMTP_CA_FILE"])
        )
    smtp = smtplib.SMTP(host, port, timeout=timeout)
    try:
        if mode == "starttls":
            smtp.starttls(context=client_context(config["SMTP_CA_FILE"]))
    except BaseException:
        smtp.close()
        raise
    return smtp


def send_mail(to: str, subject: str, body: str, message_id: str) -> None:
    """Send one plain-text mail; `message_id` is stable so a resend can be recognised."""
    cfg = current_app.config
    msg = EmailMessage()
    msg["From"] = cfg["MAIL_FROM"]
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg.set_content(body)
    with connect(cfg) as smtp:
        if cfg["SMTP_USERNAME"]:
            smtp.login(cfg["SMTP_USERNAME"], cfg["SMTP_PASSWORD"] or "")
        smtp.send_message(msg)
