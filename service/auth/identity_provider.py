"""Tokens from an identity provider: JWTs verified against the keys it publishes (JWKS).

The issuer, audience and JWKS URL come from `AUTH_JWT_*`; the token's `sub` names the caller
and a claim (`scope` by default, a space-separated string or a list) carries its scopes.
Only asymmetric algorithms are accepted, so a token can never be signed with a published key.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import jwt

from ..budget import ConfigError
from .callers import SCOPES, Caller, CallerUnknown, IdentityProviderUnavailable, owner_id

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")
#: Seconds of clock difference tolerated on `exp` and `nbf`.
LEEWAY = 30
#: Seconds a fetch of the key set may take, and seconds the key set is kept.
FETCH_TIMEOUT = 5
KEYS_LIFESPAN = 300


@dataclass(frozen=True)
class IdentityProvider:
    issuer: str
    audience: str
    jwks_url: str
    scopes_claim: str = "scope"
    ca_file: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> IdentityProvider | None:
        """The configured provider, None when none is; ConfigError when half configured."""
        names = ("AUTH_JWT_ISSUER", "AUTH_JWT_AUDIENCE", "AUTH_JWT_JWKS_URL")
        given = [n for n in names if config.get(n)]
        if not given:
            return None
        if len(given) != len(names):
            missing = ", ".join(f"FLASK_{n}" for n in names if n not in given)
            raise ConfigError(
                f"an identity provider needs all of {', '.join(names)}; set {missing}"
            )
        url = config["AUTH_JWT_JWKS_URL"]
        if urlsplit(url).scheme != "https" or not urlsplit(url).hostname:
            raise ConfigError(f"FLASK_AUTH_JWT_JWKS_URL={url!r}: expected an https:// URL")
        return cls(
            config["AUTH_JWT_ISSUER"],
            config["AUTH_JWT_AUDIENCE"],
            url,
            config.get("AUTH_JWT_SCOPES_CLAIM") or "scope",
            config.get("AUTH_JWT_CA_FILE"),
        )

    @cached_property
    def _keys(self) -> jwt.PyJWKClient:
        context = ssl.create_default_context(cafile=self.ca_file)
        return jwt.PyJWKClient(
            self.jwks_url, lifespan=KEYS_LIFESPAN, timeout=FETCH_TIMEOUT, ssl_context=context
        )

    def verify(self, token: str) -> Caller:
        """The caller the token names, or CallerUnknown; IdentityProviderUnavailable when the
        provider's keys cannot be fetched."""
        try:
            key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IdentityProviderUnavailable(str(exc)) from None
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise CallerUnknown(f"token: {exc}") from None
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise CallerUnknown(f"token: {exc}") from None
        subject = str(claims["sub"])
        return Caller(
            owner_id("jwt", f"{self.issuer}\n{subject}"),
            f"jwt:{subject}"[:100],
            frozenset(self._scopes(claims.get(self.scopes_claim))),
        )

    @staticmethod
    def _scopes(claim: Any) -> set[str]:
        if isinstance(claim, str):
            claim = claim.split()
        if not isinstance(claim, list):
            return set()
        return {s for s in claim if s in SCOPES}
