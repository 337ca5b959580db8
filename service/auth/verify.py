"""From a request's bearer token to its caller, by API key or identity provider token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import api_keys
from .callers import Caller, CallerUnknown
from .identity_provider import IdentityProvider


class Authenticator:
    """Knows the configured keys and identity provider of one app."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.keys = api_keys.configured_keys(config["API_KEYS"])
        self.provider = IdentityProvider.from_config(config)

    def authenticate(self, token: str) -> Caller:
        """The caller `token` belongs to; CallerUnknown when it belongs to none."""
        if token.startswith(api_keys.TOKEN_PREFIX):
            caller = api_keys.find(token, self.keys)
            if caller is None:
                raise CallerUnknown("unknown or revoked API key")
            return caller
        if self.provider is None:
            raise CallerUnknown("not an API key of this service")
        return self.provider.verify(token)
