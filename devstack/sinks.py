"""Local stand-ins for the outside world, for `make run` and the tests: an SMTP sink that keeps
every mail as a file, and a webhook receiver that verifies signatures and keeps every body.

Neither is used in production; aiosmtpd comes with the `dev` extra.
"""

from __future__ import annotations

import json
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from service.outbound.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, verify


class SmtpSink:
    """An SMTP server on `host:port` that writes each mail to `<directory>/<n>.eml`."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 8025) -> None:
        from aiosmtpd.controller import Controller  # the dev extra; only the sink needs it

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname=host, port=port)
        self.host, self.port = host, port

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            name = f"{time.time_ns()}.eml"
            (self.directory / name).write_bytes(envelope.content)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        """Every mail received so far, oldest first."""
        return [
            message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted(self.directory.glob("*.eml"))
        ]

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class WebhookSink:
    """An HTTP receiver: POST /<endpoint name> is stored with its signature check.

    `secrets` maps a path (e.g. "/hooks/a") to the secret its deliveries are signed with;
    `status_script` maps a path to the status codes to answer, in order (then 200).
    """

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.secrets: dict[str, str] = {}
        self.status_script: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.host, self.port = str(self.server.server_address[0]), self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                secret = sink.secrets.get(self.path)
                header = self.headers.get(SIGNATURE_HEADER, "")
                with sink._lock:
                    script = sink.status_script.get(self.path, [])
                    status = script.pop(0) if script else 200
                    record = {
                        "path": self.path,
                        "event_id": self.headers.get(EVENT_ID_HEADER),
                        "signature_valid": secret is not None and verify(secret, body, header),
                        "body": body.decode(errors="replace"),
                        "answered": status,
                        "received_at": time.time(),
                    }
                    (sink.directory / f"{time.time_ns()}.json").write_text(json.dumps(record))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def received(self, path: str | None = None) -> list[dict[str, Any]]:
        """Every request received so far (for `path` only, if given), oldest first."""
        records = [json.loads(p.read_text()) for p in sorted(self.directory.glob("*.json"))]
        return [r for r in records if path is None or r["path"] == path]

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
