"""API keys: bearer tokens of which only a SHA-256 digest is ever stored.

A token is 32 random bytes, so its digest cannot be guessed backwards and needs no slow hash.
Keys live in the `api_keys` table (`flask api-keys create|list|revoke`) or in the `API_KEYS`
setting, a JSON list of ``{"name", "scopes", "sha256"}`` that a Kubernetes Secret can hold.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from ..budget import ConfigError
from ..data.db import db, utcnow
from ..data.models import ApiKey
from .callers import SCOPES, Caller, owner_id

#: Every token starts with this, so leaked tokens are easy to find (and to redact).
TOKEN_PREFIX = "fck_"
_HEX64 = frozenset("0123456789abcdef")
#: A key's name: what logs and `api-keys list` show (the chart's schema has the same rule).
NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")


def check_name(name: object, where: str) -> str:
    """The name, or ConfigError naming `where` when it is not a valid key name."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: expected 1 to 64 letters, digits, '.', '_' or '-', starting and ending "
            "with a letter or digit"
        )
    return name


def new_token() -> str:
    """A fresh random token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The SHA-256 of a token, as it is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_scopes(scopes: Iterable[str], where: str) -> list[str]:
    """The scopes, or ConfigError naming `where` when one is unknown or there are none."""
    scopes = list(scopes)
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ConfigError(
            f"{where}: scopes must be a non-empty list of {', '.join(SCOPES)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return sorted(set(scopes), key=SCOPES.index)


def configured_keys(entries: Any) -> dict[str, Caller]:
    """The `API_KEYS` setting as digest -> caller; ConfigError naming the entry at fault."""
    if not isinstance(entries, list):
        raise ConfigError("FLASK_API_KEYS: expected a JSON list of {name, scopes, sha256}")
    out: dict[str, Caller] = {}
    names: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"FLASK_API_KEYS[{i}]"
        if not isinstance(entry, Mapping) or set(entry) != {"name", "scopes", "sha256"}:
            raise ConfigError(f"{where}: expected exactly the keys name, scopes and sha256")
        name, sha = check_name(entry["name"], f"{where}.name"), entry["sha256"]
        if name in names:
            raise ConfigError(f"{where}.name: {name!r} is the name of another key")
        if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _HEX64:
            raise ConfigError(
                f"{where}.sha256: expected the 64 lower-case hex digits of the token's SHA-256 "
                "(`flask api-keys digest NAME` prints a token and its entry)"
            )
        if not isinstance(entry["scopes"], list):
            raise ConfigError(f"{where}.scopes: expected a list")
        scopes = check_scopes(entry["scopes"], f"{where}.scopes")
        names.add(name)
        out[sha] = Caller(owner_id("key", sha), name, frozenset(scopes))
    return out


def find(token: str, configured: Mapping[str, Caller]) -> Caller | None:
    """The caller whose key `token` is, from the setting or the database; None if none."""
    sha = digest(token)
    for known, caller in configured.items():
        if hmac.compare_digest(known, sha):
            return caller
    row = db.session.execute(
        sa.select(ApiKey).where(ApiKey.token_sha256 == sha, ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if row is None:
        return None
    return Caller(owner_id("key", sha), row.name, frozenset(row.scopes))


def create(name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
    """Store a new key; return its row and its token, which is shown once and never kept."""
    token = new_token()
    scopes = check_scopes(scopes, "--scope")
    key = ApiKey(name=check_name(name, "NAME"), token_sha256=digest(token), scopes=scopes)
    db.session.add(key)
    db.session.commit()
    return key, token


def revoke(name: str) -> bool:
    """Revoke the key called `name`; False when there is no such key in use."""
    key = db.session.execute(
        sa.select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if key is None:
        return False
    key.revoked_at = utcnow()
    db.session.commit()
    return True


def listing() -> list[ApiKey]:
    """Every key in the database, revoked ones too, oldest first."""
    return list(db.session.scalars(sa.select(ApiKey).order_by(ApiKey.id)))
