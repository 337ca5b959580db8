"""Webhooks reach only what was vetted: one lookup, a pinned connection, verified TLS.

The delivery's body (`service.tasks.webhooks.attempt`) runs in-process against a scripted DNS
server on loopback (tests/support/dns.py), so a name can answer differently on each lookup. Two
real receivers listen on the same port: the allowed one on 127.0.0.1 (the allow-list names
127.0.0.1 and that port) and the forbidden one on 127.0.0.2, outside it. Whatever a test does,
the forbidden receiver must get nothing. The endpoint API is asked through the app's test
client, with the system's resolver.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from uuid import uuid4

import flask_migrate
import pytest
from flask import Flask

from devstack.sinks import WebhookSink
from harness.auth import api_keys_setting, bearer
from service import create_app
from service.data.db import db
from service.data.models import WebhookDelivery, WebhookEndpoint
from service.outbound.egress import EgressRefused, HostUnresolved
from service.reliability.retry import PermanentError, is_transient
from service.tasks.webhooks import attempt
from tests.support.dns import ScriptedDns
from tests.support.tls import CertificateAuthority, ServerCertificate


class Receiver(WebhookSink):
    """The webhook sink, plus: its 3xx answers send the caller to `location`; it keeps the Host
    header of every request; given a certificate, it speaks HTTPS and keeps the SNI names."""

    def __init__(
        self, directory: Path, *, location: str = "", certificate: ServerCertificate | None = None
    ) -> None:
        self.location = location  # _handler needs both
        self.hosts: list[str] = []
        super().__init__(directory, host="127.0.0.1")
        self.server_names: list[str | None] = []
        if certificate is not None:
            context = certificate.context()
            context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base, sink = super()._handler(), self

        class Handler(base):  # type: ignore[valid-type,misc]
            def do_POST(self) -> None:  # noqa: N802
                sink.hosts.append(self.headers.get("Host", ""))
                super().do_POST()

            def send_response(self, code: int, message: str | None = None) -> None:
                super().send_response(code, message)
                if 300 <= code < 400:
                    self.send_header("Location", sink.location)

        return Handler


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """The app on a migrated SQLite file; nothing here publishes, so the broker is never asked."""
    tmp = tmp_path_factory.mktemp("outbound")
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp / "storage"),
            "API_KEYS": api_keys_setting(),
            "WEBHOOK_TIMEOUT": 5,
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
    return app


@pytest.fixture(scope="module")
def dns() -> Iterator[ScriptedDns]:
    """The scripted DNS server on 127.0.0.1."""
    server = ScriptedDns().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookSink]:
    """The receiver webhooks may reach: 127.0.0.1 on a free port."""
    sink = WebhookSink(tmp_path_factory.mktemp("allowed"), host="127.0.0.1").start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def forbidden(
    tmp_path_factory: pytest.TempPathFactory, allowed: WebhookSink
) -> Iterator[WebhookSink]:
    """The receiver webhooks must never reach: 127.0.0.2, on the allowed receiver's port."""
    sink = WebhookSink(
        tmp_path_factory.mktemp("forbidden"), host="127.0.0.2", port=allowed.port
    ).start()
    yield sink
    assert sink.received() == [], "a webhook reached the forbidden receiver"
    sink.stop()


@pytest.fixture
def config(app: Flask, allowed: WebhookSink, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The app's config, allowing 127.0.0.1 on the allowed receiver's port only; a test may
    change it, and the change is undone after it."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", [f"127.0.0.1:{allowed.port}"])
    monkeypatch.setitem(app.config, "WEBHOOK_CA_FILE", None)
    return app.config


def deliver(app: Flask, url: str, dns: ScriptedDns) -> dict[str, Any]:
    """Record an endpoint for `url` and one delivery to it; run the delivery's body, resolving
    names with `dns`. Returns the task's result; raises what the task raises."""
    with app.app_context():
        endpoint = WebhookEndpoint(url=url, secret="s" * 32)
        db.session.add(endpoint)
        db.session.flush()
        delivery = WebhookDelivery(
            event_id=str(uuid4()), endpoint_id=endpoint.id, event_type="test.out", payload={}
        )
        db.session.add(delivery)
        db.session.commit()
        try:
            return attempt(delivery.id, dns.resolver())
        finally:
            db.session.rollback()
            db.session.remove()


def attempts_of(app: Flask, url: str) -> int:
    """The attempts recorded for the delivery to `url`."""
    with app.app_context():
        endpoint = db.session.execute(db.select(WebhookEndpoint).filter_by(url=url)).scalar_one()
        row = db.session.execute(
            db.select(WebhookDelivery).filter_by(endpoint_id=endpoint.id)
        ).scalar_one()
        attempts = row.attempts
        db.session.remove()
    return attempts


def test_a_name_that_rebinds_after_the_check_is_connected_to_the_vetted_address(
    app: Flask, config: dict[str, Any], dns: ScriptedDns, allowed: WebhookSink,
    forbidden: WebhookSink,
) -> None:  # fmt: skip
    # first answer: the allowed receiver; every later one: the forbidden receiver
    dns.answer("rebind.test", ["127.0.0.1"], ["127.0.0.2"])
    url = f"http://rebind.test:{allowed.port}/hooks/rebind"

    assert deliver(app, url, dns) == {"status": "delivered", "response_status": 200}
    assert forbidden.received() == []
    assert [r["path"] for r in allowed.received("/hooks/rebind")] == ["/hooks/rebind"]
    assert dns.lookups("rebind.test") == 1  # resolved once for the check and the connection

    # the next attempt resolves again, gets the forbidden address, and is refused
    with pytest.raises(EgressRefused, match="rebind.test: refused: internal address"):
        deliver(app, url, dns)
    assert dns.lookups("rebind.test") == 2
    assert forbidden.received() == []


@pytest.mark.parametrize(
    ("name", "addresses"),
    [
        ("loopback.test", ["127.0.0.2"]),  # where the forbidden receiver listens
        ("metadata.test", ["169.254.169.254"]),
        ("cluster.test", ["10.96.0.10"]),
        ("mixed.test", ["127.0.0.1", "10.0.0.1"]),  # one allowed address does not vouch for all
        ("mapped.test", ["::ffff:127.0.0.2"]),
    ],
)
def test_a_name_resolving_to_an_internal_address_is_refused_before_any_connection(
    app: Flask, config: dict[str, Any], dns: ScriptedDns, allowed: WebhookSink,
    forbidden: WebhookSink, name: str, addresses: list[str],
) -> None:  # fmt: skip
    dns.answer(name, addresses)
    url = f"http://{name}:{allowed.port}/hooks/{name}"
    with pytest.raises(EgressRefused) as refused:
        deliver(app, url, dns)
    message = str(refused.value)
    assert message.startswith(f"{name}: refused: internal address")
    assert not any(a in message for a in addresses)  # the answer is not told
    assert not is_transient(refused.value)
    assert attempts_of(app, url) == 0  # no attempt was made
    assert allowed.received(f"/hooks/{name}") == []
    assert forbidden.received() == []


def test_the_allow_list_admits_its_port_only(
    app: Flask, config: dict[str, Any], dns: ScriptedDns, allowed: WebhookSink
) -> None:
    dns.answer("ports.test", ["127.0.0.1"])
    with pytest.raises(EgressRefused, match="refused: internal address"):
        deliver(app, f"http://ports.test:{allowed.port + 1}/hooks/other-port", dns)
    assert allowed.received("/hooks/other-port") == []
    config["WEBHOOK_ALLOWED_NETWORKS"] = ["127.0.0.0/8"]  # a whole network, any port
    result = deliver(app, f"http://ports.test:{allowed.port}/hooks/any-port", dns)
    assert result["status"] == "delivered"


def test_a_name_that_does_not_exist_is_refused_for_good(
    app: Flask, config: dict[str, Any], dns: ScriptedDns
) -> None:
    with pytest.raises(HostUnresolved, match="nowhere.test: does not resolve") as refused:
        deliver(app, "http://nowhere.test/hooks/x", dns)
    assert not is_transient(refused.value)


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_to_an_internal_address_is_not_followed(
    app: Flask, config: dict[str, Any], dns: ScriptedDns, allowed: WebhookSink,
    forbidden: WebhookSink, tmp_path: Path, status: int,
) -> None:  # fmt: skip
    target = f"http://127.0.0.2:{allowed.port}/hooks/redirected"
    sink = Receiver(tmp_path, location=target).start()
    try:
        config["WEBHOOK_ALLOWED_NETWORKS"] = [f"127.0.0.1:{sink.port}"]
        sink.status_script["/hooks/redirect"] = [status]
        dns.answer("redirect.test", ["127.0.0.1"])
        with pytest.raises(PermanentError, match=f"receiver answered HTTP {status}"):
            deliver(app, f"http://redirect.test:{sink.port}/hooks/redirect", dns)
        assert [r["answered"] for r in sink.received()] == [status]
    finally:
        sink.stop()
    assert forbidden.received() == []


def test_proxy_variables_of_the_environment_are_ignored(
    app: Flask, config: dict[str, Any], dns: ScriptedDns, allowed: WebhookSink,
    forbidden: WebhookSink, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # the forbidden receiver poses as the proxy: a client that honoured these would POST to it
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, forbidden.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    dns.answer("proxied.test", ["127.0.0.1"])
    result = deliver(app, f"http://proxied.test:{allowed.port}/hooks/no-proxy", dns)
    assert result["status"] == "delivered"
    assert len(allowed.received("/hooks/no-proxy")) == 1
    assert forbidden.received() == []


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A CA made for this module; nothing trusts it unless told to."""
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


def https_delivery(
    app: Flask, config: dict[str, Any], dns: ScriptedDns, sink: Receiver, path: str
) -> dict[str, Any]:
    config["WEBHOOK_ALLOWED_NETWORKS"] = [f"127.0.0.1:{sink.port}"]
    dns.answer("hooks.test", ["127.0.0.1"])
    return deliver(app, f"https://hooks.test:{sink.port}{path}", dns)


def test_https_receivers_are_verified_against_the_configured_ca_for_the_url_name(
    app: Flask, config: dict[str, Any], dns: ScriptedDns, ca: CertificateAuthority,
    tmp_path: Path,
) -> None:  # fmt: skip
    sink = Receiver(tmp_path, certificate=ca.issue("hooks.test")).start()
    try:
        # the system's CAs do not know this one
        with pytest.raises(PermanentError, match="hooks.test: TLS certificate not verified"):
            https_delivery(app, config, dns, sink, "/hooks/untrusted")
        assert sink.received() == []

        config["WEBHOOK_CA_FILE"] = str(ca.bundle)
        result = https_delivery(app, config, dns, sink, "/hooks/trusted")
        assert result == {"status": "delivered", "response_status": 200}
        assert [r["path"] for r in sink.received()] == ["/hooks/trusted"]
        assert sink.hosts == [f"hooks.test:{sink.port}"]  # Host names the URL's host...
        assert "hooks.test" in sink.server_names  # ...and so does SNI, not the address
    finally:
        sink.stop()


def test_a_certificate_for_another_name_is_refused_even_when_it_names_the_address(
    app: Flask, config: dict[str, Any], dns: ScriptedDns, ca: CertificateAuthority,
    tmp_path: Path,
) -> None:  # fmt: skip
    # valid for the address the connection goes to, and for another name: not for hooks.test
    sink = Receiver(tmp_path, certificate=ca.issue("other.test", "127.0.0.1")).start()
    try:
        config["WEBHOOK_CA_FILE"] = str(ca.bundle)
        with pytest.raises(PermanentError, match="TLS certificate not verified.*mismatch"):
            https_delivery(app, config, dns, sink, "/hooks/mismatch")
        assert sink.received() == []
    finally:
        sink.stop()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://127.0.0.2:{port}/hooks/x", "127.0.0.2"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        # the URL is normalised on the way in: the mapped address reads in hex
        ("http://[::ffff:169.254.169.254]/latest/meta-data/", "::ffff:a9fe:a9fe"),
        ("http://localhost:{other}/hooks/x", "localhost"),  # the system resolver: 127.0.0.1
        ("http://127.0.0.1:{other}/hooks/x", "127.0.0.1"),  # allowed address, another port
    ],
)
def test_creating_an_endpoint_for_an_internal_url_is_422_naming_the_field(
    app: Flask, config: dict[str, Any], allowed: WebhookSink, url: str, named: str
) -> None:
    url = url.format(port=allowed.port, other=allowed.port + 1)
    response = app.test_client().post("/webhook-endpoints", json={"url": url}, headers=bearer())
    assert response.status_code == 422, response.json
    body = response.json
    assert body["field"] == "url"
    assert body["message"].startswith(f"url: {named}: refused: internal address")
    if named == "localhost":
        assert "127.0.0.1" not in body["message"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hooks/created",  # the allow-list's address and port
        "http://nothing.invalid/hooks/created",  # does not resolve yet: vetted at delivery
    ],
)
def test_creating_an_endpoint_for_an_allowed_or_unresolved_url_succeeds(
    app: Flask, config: dict[str, Any], allowed: WebhookSink, url: str
) -> None:
    url = url.format(port=allowed.port)
    response = app.test_client().post("/webhook-endpoints", json={"url": url}, headers=bearer())
    assert response.status_code == 201, response.json
    assert response.json["url"] == url
