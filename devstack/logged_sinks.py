"""The SMTP sink and the webhook receiver as `make run` runs them: the sinks of `devstack.sinks`,
each also saying one line on the console per mail or request (a webhook's with its signature
check), so that a developer sees outbound traffic where the logs are.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler
from typing import Any

from service.outbound.signing import SIGNATURE_HEADER, verify

from .sinks import SmtpSink, WebhookSink


class LoggedSmtpSink(SmtpSink):
    """The SMTP sink, saying one line per mail."""

    say: Callable[[str], None] = print

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)
        subject = message_from_bytes(envelope.content, policy=policy.default)["subject"]
        self.say(f"mail to {', '.join(envelope.rcpt_tos)} subject {subject!r}")
        return reply


class LoggedWebhookSink(WebhookSink):
    """The webhook receiver, saying one line per request with its signature check."""

    say: Callable[[str], None] = print

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink, base = self, super()._handler()

        class Handler(base):  # type: ignore[valid-type,misc]
            rfile: io.BufferedIOBase

            def do_POST(self) -> None:  # noqa: N802
                # The base handler consumes the body; keep a copy to check the signature here.
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.rfile = io.BytesIO(body)
                super().do_POST()
                secret, header = sink.secrets.get(self.path), self.headers[SIGNATURE_HEADER]
                check = "not checked (no secret for this path)"
                if secret:
                    check = "valid" if verify(secret, body, header or "") else "INVALID"
                sink.say(f"POST {self.path} ({len(body)} bytes), signature {check}")

        return Handler
