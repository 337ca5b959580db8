"""TLS for every call that leaves the system: the server's certificate and name are verified.

Mail (STARTTLS or implicit TLS) and webhooks over HTTPS take their context from here: TLS 1.2
or newer, the certificate checked against the system's CAs (`SSL_CERT_FILE` and `SSL_CERT_DIR`
are honoured), or against one bundle when the setting names a file (`SMTP_CA_FILE`,
`WEBHOOK_CA_FILE`), and the host name checked against the certificate.
"""

from __future__ import annotations

import ssl


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server: against `ca_file` alone when given, else
    against the system's CAs."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
