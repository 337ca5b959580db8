"""Who is calling: API keys (kept as digests), tokens from an identity provider, and scopes.

`Authenticator` turns a bearer token into a `Caller`; the API (`service.api.access`) decides
per route which scope a caller needs. Keys come from the database (`flask api-keys create`)
or from the `API_KEYS` setting (digests only, for a Kubernetes Secret); tokens are JWTs
verified against the identity provider's published keys when `AUTH_JWT_*` are set.
"""

from __future__ import annotations

from .callers import ANONYMOUS, SCOPES, Caller, CallerUnknown, IdentityProviderUnavailable
from .verify import Authenticator

__all__ = [
    "ANONYMOUS",
    "Authenticator",
    "SCOPES",
    "Caller",
    "CallerUnknown",
    "IdentityProviderUnavailable",
]
