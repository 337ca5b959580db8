"""Tokens from an identity provider: JWTs verified against its keys, fetched over verified TLS.

The provider is a JWKS document served over HTTPS on loopback with a certificate of a test CA;
the app trusts that CA only through AUTH_JWT_CA_FILE.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import flask_migrate
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient

from service import create_app
from service.budget import ConfigError
from tests.support.tls import CertificateAuthority

ISSUER = "https://id.example.com/"
AUDIENCE = "flask-celery"
KID = "signing-1"


@dataclass
class Provider:
    url: str
    ca_file: Path
    key: rsa.RSAPrivateKey
    server: ThreadingHTTPServer

    def token(
        self, key: Any = None, kid: str = KID, algorithm: str = "RS256", **claims: Any
    ) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc-billing", "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    ca = CertificateAuthority(tmp_path_factory.mktemp("ca"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    document = json.dumps({"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    server.socket = ca.issue("127.0.0.1").context().wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    yield Provider(url, ca.bundle, key, server)
    server.shutdown()
    server.server_close()


def client_for(provider: Provider, tmp_path: Path, **config: Any) -> FlaskClient:
    settings = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "AUTH_JWT_ISSUER": ISSUER,
        "AUTH_JWT_AUDIENCE": AUDIENCE,
        "AUTH_JWT_JWKS_URL": provider.url,
        "AUTH_JWT_CA_FILE": str(provider.ca_file),
        **config,
    }
    app = create_app(settings)
    with app.app_context():
        flask_migrate.upgrade()
    return app.test_client()


def call(client: FlaskClient, path: str, token: str) -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def test_a_valid_token_is_a_caller_with_the_scopes_it_carries(
    provider: Provider, tmp_path: Path
) -> None:
    client = client_for(provider, tmp_path)
    reader = provider.token(scope="read other:scope")
    assert call(client, "/openapi.json", reader).status_code == 200
    assert call(client, "/users/1", reader).status_code == 404  # allowed: there is no user 1
    refused = call(client, "/dead-letters", reader)
    assert refused.status_code == 403 and refused.json["scope"] == "operate"
    assert call(client, "/dead-letters", provider.token(scope="operate")).status_code == 200


def test_the_scopes_claim_is_configurable_and_may_be_a_list(
    provider: Provider, tmp_path: Path
) -> None:
    client = client_for(provider, tmp_path, AUTH_JWT_SCOPES_CLAIM="scp")
    assert call(client, "/dead-letters", provider.token(scp=["operate"])).status_code == 200
    assert call(client, "/dead-letters", provider.token(scope="operate")).status_code == 403


def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda p: p.token(scope="operate", aud="another-api"), id="audience"),
        pytest.param(lambda p: p.token(scope="operate", iss="https://evil.example/"), id="issuer"),
        pytest.param(lambda p: p.token(scope="operate", exp=int(time.time()) - 120), id="expired"),
        pytest.param(lambda p: p.token(scope="operate", exp=None), id="no-expiry"),
        pytest.param(lambda p: p.token(scope="operate", sub=None), id="no-subject"),
        pytest.param(lambda p: p.token(_other_key(), scope="operate"), id="foreign-key"),
        pytest.param(lambda p: p.token(scope="operate", kid="unknown"), id="unknown-kid"),
        pytest.param(
            lambda p: jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
                "a-shared-secret-the-provider-never-had-0123456789",
                algorithm="HS256",
                headers={"kid": KID},
            ),
            id="symmetric",
        ),
        pytest.param(
            lambda p: jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
                None,
                algorithm="none",
                headers={"kid": KID},
            ),
            id="unsigned",
        ),
    ],
)
def test_a_forged_or_stale_token_is_401(provider: Provider, tmp_path: Path, forge: Any) -> None:
    answer = call(client_for(provider, tmp_path), "/dead-letters", forge(provider))
    assert answer.status_code == 401, answer.json
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


def test_keys_fetched_without_trusting_the_providers_certificate_verify_nothing(
    provider: Provider, tmp_path: Path
) -> None:
    client = client_for(provider, tmp_path, AUTH_JWT_CA_FILE=None)
    answer = call(client, "/dead-letters", provider.token(scope="operate"))
    assert answer.status_code == 503
    assert answer.json["error"] == "identity_provider_unavailable"


def test_an_unreachable_provider_is_503_not_401(provider: Provider, tmp_path: Path) -> None:
    gone = provider.url.replace(str(provider.server.server_address[1]), "9")
    client = client_for(provider, tmp_path, AUTH_JWT_JWKS_URL=gone)
    answer = call(client, "/dead-letters", provider.token(scope="operate"))
    assert answer.status_code == 503
    spec = call(client_for(provider, tmp_path), "/openapi.json", provider.token(scope="read"))
    assert "503" in spec.json["paths"]["/dead-letters"]["get"]["responses"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"AUTH_JWT_ISSUER": ISSUER}, "set FLASK_AUTH_JWT_AUDIENCE, FLASK_AUTH_JWT_JWKS_URL"),
        (
            {"AUTH_JWT_ISSUER": ISSUER, "AUTH_JWT_AUDIENCE": "a", "AUTH_JWT_JWKS_URL": "http://x/"},
            "expected an https:// URL",
        ),
    ],
)
def test_a_half_configured_provider_stops_the_app(config: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_app(config)
