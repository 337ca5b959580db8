"""TLS for every call that leaves the system: the server's certificate and name are verified.

Mail (STARTTLS or implicit TLS) and webhooks over HTTPS take their context from here: TLS 1.2
or newer, the certificate checked against the system's CAs (`SSL_CERT_FILE` and `SSL_CERT_DIR`
are honoured), or against one bundle when the setting names a file (`SMTP_CA_FILE`,
`WEBHOOK_CA_FILE`), and the host name checked against the certificate.

Loading a CA store costs tens of milliseconds of CPU (more than the rest of a webhook delivery),
so a context is made once per bundle and shared: contexts are safe to share between threads and
connections. A bundle file that is replaced (new modification time or size, as when a mounted
Secret or ConfigMap is updated) gets a new context on its next use.
"""

from __future__ import annotations

import functools
import os
import ssl


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server: against `ca_file` alone when given, else
    against the system's CAs."""
    version = None
    if ca_file:
        stat = os.stat(ca_file)
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    return _context(ca_file, version)


@functools.lru_cache(maxsize=8)
def _context(ca_file: str | None, version: tuple[int, int, int] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
