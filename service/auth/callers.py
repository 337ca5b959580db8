"""A caller of the API and the scopes it may hold."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: Enqueue jobs and create the rows they work on (users, invoices).
ENQUEUE = "enqueue"
#: Read jobs and rows: a job only if the caller enqueued it.
READ = "read"
#: Run the system: dead letters and re-drives, webhook endpoints, export downloads, scheduled
#: tasks run by hand, and every caller's jobs.
OPERATE = "operate"
SCOPES: tuple[str, ...] = (ENQUEUE, READ, OPERATE)


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a stable `owner` id for the rows it makes, a name for the logs."""

    owner: str
    name: str
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        return scope in self.scopes


#: Every request's caller while `AUTH_DISABLED` is on (development only).
ANONYMOUS = Caller(owner="anonymous", name="anonymous", scopes=frozenset(SCOPES))


class CallerUnknown(Exception):
    """The token is not a key this API knows, or not a valid token of the identity provider."""


class IdentityProviderUnavailable(Exception):
    """The identity provider's keys could not be fetched, so no token can be verified now."""


def owner_id(kind: str, identity: str) -> str:
    """A short, stable id for a caller that reveals nothing about its credentials."""
    return f"{kind}:{hashlib.sha256(identity.encode()).hexdigest()[:20]}"
